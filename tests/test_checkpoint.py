"""Checkpoint folders: exact round trip, safetensors (not pickle) on disk, damage named as a CheckpointError,
and a failed save that leaves the previous checkpoint loadable."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from scratchllm.checkpoint import CONFIG, TOKENIZER, WEIGHTS, CheckpointError, load_model, save_model
from scratchllm.config import InputError
from scratchllm.model import GPT, GPTConfig
from scratchllm.tokenizer import CharTokenizer


def tiny_model(seed=0, **kw) -> GPT:
    torch.manual_seed(seed)
    base = {"vocab_size": 40, "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 16}
    return GPT(GPTConfig(**{**base, **kw}))


@pytest.fixture
def tok():
    return CharTokenizer.train("abcdefghijklmnopqrstuvwxyz .,;:!?'\n")


@pytest.mark.parametrize("kw", [{}, {"tie_weights": False, "bias": True, "positions": "rope", "qk_norm": True}])
def test_round_trip_gives_equal_tensors_config_tokenizer_and_meta(tmp_path, tok, kw):
    model = tiny_model(**kw)
    save_model(tmp_path / "ck", model, tok, extra={"step": 7, "val_loss": 1.5})
    loaded, tok2, meta = load_model(tmp_path / "ck")
    assert loaded.config == model.config
    assert meta == {"step": 7, "val_loss": 1.5}
    assert tok2.encode("hello, world") == tok.encode("hello, world")
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert (loaded.lm_head.weight is loaded.transformer.wte.weight) == model.config.tie_weights
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == sorted([CONFIG, TOKENIZER, WEIGHTS])


def test_a_run_folder_loads_its_latest_checkpoint(tmp_path, tok):
    save_model(tmp_path / "run" / "checkpoints" / "latest", tiny_model(), tok)
    model, _, _ = load_model(tmp_path / "run")
    assert model.config.vocab_size == 40


def test_weights_file_is_safetensors_not_pickle(tmp_path, tok):
    save_model(tmp_path, tiny_model(), tok)
    raw = (tmp_path / WEIGHTS).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])  # safetensors: u64 header length, JSON header, raw tensor bytes
    header = json.loads(raw[8:8 + n])
    assert header["__metadata__"] == {"format": "pt"}
    assert header["transformer.wte.weight"] == {"dtype": "F32", "shape": [40, 16],
                                                "data_offsets": header["transformer.wte.weight"]["data_offsets"]}
    assert "lm_head.weight" not in header  # tied: stored once
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    assert len(raw) == 8 + n + max(v["data_offsets"][1] for v in tensors.values())  # nothing else: no pickle
    assert not raw.startswith(b"PK")  # not torch.save's zip archive


def test_truncated_weights_raise_checkpoint_error_naming_the_file(tmp_path, tok):
    save_model(tmp_path, tiny_model(), tok)
    raw = (tmp_path / WEIGHTS).read_bytes()
    (tmp_path / WEIGHTS).write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match=WEIGHTS):
        load_model(tmp_path)


def test_garbage_weights_without_recorded_hash_still_raise_checkpoint_error(tmp_path, tok):
    save_model(tmp_path, tiny_model(), tok)
    info = json.loads((tmp_path / CONFIG).read_text())
    del info["weights"]["sha256"]
    (tmp_path / CONFIG).write_text(json.dumps(info))
    (tmp_path / WEIGHTS).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(tmp_path)


@pytest.mark.parametrize("damage, needle", [
    (lambda d: (d / WEIGHTS).unlink(), WEIGHTS),
    (lambda d: (d / CONFIG).write_text("{oops"), CONFIG),
    (lambda d: (d / CONFIG).unlink(), CONFIG),
    (lambda d: (d / TOKENIZER).write_text("[]"), TOKENIZER),
])
def test_damaged_files_raise_checkpoint_error(tmp_path, tok, damage, needle):
    save_model(tmp_path, tiny_model(), tok)
    damage(tmp_path)
    with pytest.raises(CheckpointError, match=needle.replace(".", r"\.")) as err:
        load_model(tmp_path)
    assert isinstance(err.value, InputError)


def test_config_that_disagrees_with_the_weights_is_refused(tmp_path, tok):
    save_model(tmp_path, tiny_model(), tok)
    info = json.loads((tmp_path / CONFIG).read_text())
    info["model"]["n_embd"] = 32
    (tmp_path / CONFIG).write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="shape"):
        load_model(tmp_path)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_model(tmp_path / "nowhere")


class ExplodingTokenizer:
    def save(self, path):
        raise OSError("disk full")


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path, tok):
    first = tiny_model(seed=0)
    save_model(tmp_path, first, tok, extra={"step": 1})
    with pytest.raises(OSError, match="disk full"):
        save_model(tmp_path, tiny_model(seed=1), ExplodingTokenizer(), extra={"step": 2})
    loaded, _, meta = load_model(tmp_path)
    assert meta == {"step": 1}
    assert torch.equal(loaded.transformer.wte.weight, first.transformer.wte.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CONFIG, TOKENIZER, WEIGHTS])  # no temp files left


def test_checkpoint_without_tokenizer_loads_none(tmp_path, tok):
    save_model(tmp_path, tiny_model(), tok)
    save_model(tmp_path, tiny_model(), None)
    _, loaded_tok, _ = load_model(tmp_path)
    assert loaded_tok is None
    assert not (tmp_path / TOKENIZER).exists()
