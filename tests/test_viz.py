"""viz: the maths behind the pictures against peers (torch SDPA, covariance eigenvectors), and every figure written
as a readable PNG + SVG from a run folder built by hand in the contract's format; missing inputs are skipped."""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from scratchllm.config import InputError
from scratchllm.tokenizer import train_bpe
from scratchllm.viz import attention_pipeline, pca_2d, render_all, segmentations, split_rolled_back

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest


RECORDED_STEPS = (0, 10, 20, 40)


@given(st.integers(1, 12), st.integers(1, 8), st.integers(0, 2**31 - 1))
@settings(max_examples=25, deadline=None)
def test_attention_pipeline_matches_torch_sdpa(T, hd, seed):
    q, k, v = np.random.default_rng(seed).normal(size=(3, T, hd))
    stages = attention_pipeline(q, k, v)
    want = torch.nn.functional.scaled_dot_product_attention(*(torch.tensor(x) for x in (q, k, v)), is_causal=True)
    np.testing.assert_allclose(stages["out"], want.numpy(), atol=1e-10)
    np.testing.assert_allclose(stages["att"].sum(-1), 1.0)
    assert np.isneginf(stages["masked"][np.triu_indices(T, 1)]).all()


@given(st.integers(3, 30), st.integers(2, 10), st.integers(0, 2**31 - 1))
@settings(max_examples=25, deadline=None)
def test_pca_matches_covariance_eigenvectors(n, c, seed):
    x = np.random.default_rng(seed).normal(size=(n, c)) * np.arange(1, c + 1)
    coords, share = pca_2d(x)
    values, vectors = np.linalg.eigh(np.cov(x, rowvar=False))  # ascending
    top = vectors[:, ::-1][:, :2]
    want = (x - x.mean(0)) @ top
    np.testing.assert_allclose(np.abs(coords), np.abs(want), atol=1e-8)  # eigenvectors are defined up to sign
    np.testing.assert_allclose(share, values[::-1][:2] / values.sum(), atol=1e-10)


@given(st.text(min_size=1, max_size=60))
@settings(max_examples=40, deadline=None)
def test_segmentations_join_back_to_the_sentence(sentence):
    bpe = train_bpe("To be, or not to be: that is the question. " * 5, 270, progress=False)
    rows = segmentations(sentence, bpe)
    assert [title.split()[0] for title, _ in rows] == ["characters", "this", "words"]
    assert "".join(rows[0][1]) == sentence and "".join(rows[2][1]) == sentence
    if sentence.isascii():  # beyond ASCII, a byte-level piece may cut a character in two (shown as U+FFFD)
        assert "".join(rows[1][1]) == sentence
    assert len(rows[0][1]) == len(sentence) and len(rows[1][1]) == len(bpe.encode(sentence))


@given(st.lists(st.integers(0, 30), max_size=40))
def test_split_rolled_back_keeps_the_last_try_of_each_step(steps):
    records = [{"step": s, "i": i} for i, s in enumerate(steps)]
    kept, discarded = split_rolled_back(records)
    assert sorted(r["i"] for r in kept + discarded) == list(range(len(steps)))
    assert all(a["step"] < b["step"] for a, b in zip(kept, kept[1:], strict=False))  # one per step, in order
    for rec in discarded:  # a later record re-did this step (or an earlier one)
        assert any(r["i"] > rec["i"] and r["step"] <= rec["step"] for r in records)
    assert [r["step"] for r in split_rolled_back([{"step": s} for s in (1, 2, 3, 2, 3, 4)])[0]] == [1, 2, 3, 4]


def _write_metrics(run, steps=40):
    records = []
    for i in range(steps):
        records.append({"kind": "train", "step": i, "loss": 5.7 * math.exp(-i / 15) + 1.5, "lr": 1e-3 * min(1, i / 5),
                        "grad_norm": 1.0, "tokens_per_s": 1e4, "mfu": 0.1, "mem_mb": 100, "elapsed_s": 0.1 * i,
                        "tokens": 512 * i})
        if i % 10 == 9:
            records.append({"kind": "eval", "step": i, "train_loss": records[-1]["loss"],
                            "val_loss": records[-1]["loss"] + 0.1, "val_ppl": 1, "val_bpb": 1, "train_bpb": 1})
    records.insert(20, {"kind": "event", "step": 18, "event": "rollback", "message": "lr 1e-3 -> 5e-4"})
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")


def _train_and_record(run, text, tok):
    """A real tiny GPT: a few AdamW steps on the text, recording `GPT.inspect` of a probe in the contract's format
    (attention/probe.json, attention/step_*.npz in float16) at RECORDED_STEPS, then a checkpoint."""
    from scratchllm.checkpoint import save_model
    from scratchllm.model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=16))
    ids = torch.tensor(tok.encode(text[:4000]))
    probe_ids = tok.encode("To be, or not to be, that is")
    (run / "attention").mkdir()
    (run / "attention" / "probe.json").write_text(json.dumps({"text": "To be, or not to be, that is",
                                                              "token_ids": probe_ids, "tokens": [
                                                                  tok.decode([i]) for i in probe_ids]}))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(RECORDED_STEPS[-1] + 1):
        if step in RECORDED_STEPS:
            with torch.no_grad():
                layers = model.inspect(torch.tensor([probe_ids]))
            arrays = {name: torch.stack([layer[name][0] for layer in layers]).numpy().astype(np.float16)
                      for name in ("att", "q", "k", "v")}  # (L, H, T, T) / (L, H, T, hd)
            np.savez_compressed(run / "attention" / f"step_{step:06d}.npz", step=np.array(step), **arrays)
        start = torch.randint(0, len(ids) - 33, (8,))
        x, y = torch.stack([ids[i:i + 32] for i in start]), torch.stack([ids[i + 1:i + 33] for i in start])
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    save_model(run / "checkpoints" / "latest", model, tok, {"step": RECORDED_STEPS[-1]})


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, shakespeare_text):
    """A hand-built run folder, rendered once for the module: (run, paths, notes)."""
    run = tmp_path_factory.mktemp("run")
    _write_metrics(run)
    tok = train_bpe(shakespeare_text[:20_000], 300, progress=False)
    tok.save(run / "tokenizer.json")
    _train_and_record(run, shakespeare_text, tok)
    notes = []
    return run, render_all(run, notes), notes


def test_render_all_writes_png_and_svg_of_each_figure(rendered):
    run, paths, notes = rendered
    names = {p.name for p in paths}
    for stem in ("loss", "attention_layer0", "attention_layer1", "attention_evolution", "attention_cube",
                 "attention_pipeline", "tokenization", "embeddings_pca"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names
        with Image.open(run / "figures" / f"{stem}.png") as im:
            assert im.width > 300 and im.height > 200
        ET.parse(run / "figures" / f"{stem}.svg")  # well-formed XML
    with Image.open(run / "figures" / "attention_evolution.gif") as gif:
        assert gif.n_frames == len(RECORDED_STEPS)
    assert all(p.parent == run / "figures" and p.is_file() for p in paths)
    assert notes == []
    assert not list((run / "figures").glob(".*"))  # no temp files left behind


def test_recorded_attention_is_the_pipeline_of_the_recorded_q_k(rendered):
    """The model's reference attention (recorded) equals softmax(mask(q kᵀ/√d)) recomputed by viz from q and k."""
    run = rendered[0]
    for step in RECORDED_STEPS:
        rec = np.load(run / "attention" / f"step_{step:06d}.npz")
        q, k, v, att = (rec[n].astype(np.float64) for n in ("q", "k", "v", "att"))
        for layer, head in np.ndindex(att.shape[:2]):
            got = attention_pipeline(q[layer, head], k[layer, head], v[layer, head])["att"]
            np.testing.assert_allclose(got, att[layer, head], atol=3e-3)  # float16 storage


def test_render_all_skips_what_is_missing(tmp_path):
    notes = []
    assert render_all(tmp_path, notes) == []
    assert len(notes) == 8 and any("no metrics.jsonl" in n for n in notes)
    (tmp_path / "attention").mkdir()
    (tmp_path / "attention" / "step_000000.npz").write_bytes(b"not a zip")
    notes = []
    render_all(tmp_path, notes)
    assert any("unreadable attention record" in n for n in notes)
    with pytest.raises(InputError, match="not found"):
        render_all(tmp_path / "missing")


def test_viz_cli_lists_files(tmp_path, capsys):
    from scratchllm.cli import main

    _write_metrics(tmp_path)
    assert main(["viz", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [str(tmp_path / "figures" / "loss.png"), str(tmp_path / "figures" / "loss.svg")]
    assert "no attention records" in captured.err
    assert main(["viz", str(tmp_path / "nope")]) == 2


def test_viz_cli_on_a_folder_that_is_not_a_run_says_so_in_one_line(tmp_path, capsys):
    from scratchllm.cli import main

    (tmp_path / "notes.txt").write_text("not a run")
    assert main(["viz", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not a run folder" in err
    assert not (tmp_path / "figures").exists()


def test_render_all_only_missing_draws_just_what_is_not_there_or_is_stale(rendered):
    run = rendered[0]
    before = {p.name: p.stat().st_mtime_ns for p in (run / "figures").iterdir()}
    assert render_all(run, [], only_missing=True) == []
    (run / "figures" / "loss.png").unlink()
    assert {p.name for p in render_all(run, [], only_missing=True)} == {"loss.png", "loss.svg"}
    after = {p.name: p.stat().st_mtime_ns for p in (run / "figures").iterdir()}
    assert {name for name in before if before[name] != after[name]} == {"loss.png", "loss.svg"}
    newer = (run / "figures" / "loss.png").stat().st_mtime + 5
    os.utime(run / "metrics.jsonl", (newer, newer))  # the run went on after the figures were drawn
    assert {p.name for p in render_all(run, [], only_missing=True)} >= {"loss.png", "attention_cube.png"}
