"""Our GPT against Hugging Face transformers' GPT2LMHeadModel, both directions, random tiny weights (no download).

The RoPE families (GPT-NeoX, Llama, Arcee, Qwen3, Apertus) are tested in test_hf_families.py."""

from __future__ import annotations

import json

import pytest
import torch

from scratchllm.config import InputError
from scratchllm.convert import export_hf, import_hf
from scratchllm.model import GPT, GPTConfig
from scratchllm.tokenizer import CharTokenizer

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.peer
IDS = torch.tensor([[1, 5, 9, 33, 2, 0, 44, 7, 7, 12, 60, 3], [4, 4, 4, 20, 21, 22, 50, 51, 52, 1, 2, 3]])


def random_hf_model(tie=True, activation="gelu_new") -> transformers.GPT2LMHeadModel:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=61, n_positions=16, n_embd=32, n_layer=2, n_head=4, bos_token_id=0,
                                  eos_token_id=0, tie_word_embeddings=tie, activation_function=activation,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = transformers.GPT2LMHeadModel(cfg)
    with torch.no_grad():  # GPT-2 init leaves biases 0 and norms 1: randomise them so the mapping is tested
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def ours(seed=0, **kw) -> GPT:
    torch.manual_seed(seed)
    base = {"vocab_size": 61, "block_size": 16, "n_layer": 2, "n_head": 4, "n_embd": 32}
    model = GPT(GPTConfig(**{**base, **kw}))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


@pytest.mark.parametrize("tie, activation", [(True, "gelu_new"), (False, "gelu_new"), (True, "relu")])
def test_hf_gpt2_imported_gives_equal_logits(tmp_path, tie, activation):
    hf = random_hf_model(tie, activation)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    model, tok, notes = import_hf(tmp_path)
    assert model.config.tie_weights == tie and model.config.bias
    assert tok is None and notes
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(IDS)[0], hf(IDS).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kw", [{}, {"bias": True}, {"tie_weights": False}, {"activation": "relu", "bias": True},
                                {"activation": "relu2"}])
def test_exported_model_loads_in_transformers_with_equal_logits(tmp_path, kw):
    model = ours(**kw)
    export_hf(model, tmp_path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(hf, transformers.GPT2LMHeadModel)
    with torch.no_grad():
        torch.testing.assert_close(hf(IDS).logits, model(IDS)[0], atol=1e-4, rtol=1e-4)


def test_export_then_import_round_trips_weights_config_and_tokenizer(tmp_path):
    tok = CharTokenizer.train("".join(chr(c) for c in range(32, 93)))
    model = ours(bias=False, tie_weights=False)
    export_hf(model, tmp_path, tok)
    back, tok2, notes = import_hf(tmp_path)
    assert back.config == model.config and not notes
    assert tok2.encode("HELLO") == tok.encode("HELLO")
    for name, t in model.state_dict().items():
        assert torch.equal(back.state_dict()[name], t), name


def test_param_count_matches_transformers():
    hf = random_hf_model()
    model = ours(bias=True)
    assert model.num_params() == hf.num_parameters()


@pytest.mark.parametrize("kw, needle", [
    ({"positions": "rope", "norm": "post"}, "norm=post"), ({"activation": "swiglu"}, "activation=swiglu"),
    ({"norm_type": "rmsnorm"}, "norm_type=rmsnorm"), ({"norm": "post"}, "norm=post"), ({"qk_norm": True}, "qk_norm"),
])
def test_options_no_hf_family_expresses_are_refused_by_name(tmp_path, kw, needle):
    """Learned positions with anything but GPT-2's LayerNorm, non-gated MLP and plain q/k, and post-norm: no family
    (RoPE models go to GPT-NeoX, Llama, Arcee, Qwen3 or Apertus: tests/test_hf_families.py)."""
    with pytest.raises(InputError, match=needle):
        export_hf(ours(**kw), tmp_path)
    assert not any(tmp_path.iterdir())


def test_import_refuses_pickles_and_unsupported_settings(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(InputError, match="pickle"):
        import_hf(tmp_path)
    hf = random_hf_model()
    hf.config.activation_function = "gelu"  # exact erf GELU: ours is GPT-2's tanh form
    hf.save_pretrained(tmp_path / "erf", safe_serialization=True)
    with pytest.raises(InputError, match="activation_function"):
        import_hf(tmp_path / "erf")
    (tmp_path / "mistral").mkdir()
    (tmp_path / "mistral" / "config.json").write_text(json.dumps({"model_type": "mistral"}))
    with pytest.raises(InputError, match="model_type"):
        import_hf(tmp_path / "mistral")


@pytest.mark.slow
def test_gpt2_small_shape_round_trips_through_transformers(tmp_path):
    """The real GPT-2 (124M) shape, random weights: export -> transformers -> import, logits equal throughout."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, bias=True)).eval()
    export_hf(model, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert hf.num_parameters() == model.num_params() == 124_439_808
    ids = torch.randint(0, 50257, (1, 64))
    back, _, _ = import_hf(tmp_path / "hf")
    with torch.no_grad():
        ours = model(ids)[0]
        torch.testing.assert_close(hf(ids).logits, ours, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(back.eval()(ids)[0], ours, atol=0, rtol=0)


def test_hub_layout_without_prefix_and_with_mask_buffers_imports(tmp_path):
    """openai-community/gpt2's file names tensors "h.0.attn.c_attn.weight" (no "transformer.") and stores the old
    causal-mask buffers "h.0.attn.bias" (1, 1, n_ctx, n_ctx): both must be handled."""
    from safetensors.torch import save_file

    hf = random_hf_model()
    state = hf.state_dict()
    tensors = {k.removeprefix("transformer."): v.contiguous() for k, v in state.items() if k != "lm_head.weight"}
    for i in range(2):
        tensors[f"h.{i}.attn.bias"] = torch.ones(1, 1, 16, 16).tril()
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    hf.config.to_json_file(tmp_path / "config.json")
    (tmp_path / "vocab.json").write_text("{}")
    model, tok, notes = import_hf(tmp_path)
    assert tok is None and "vocab.json" in notes[0]
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(IDS)[0], hf(IDS).logits, atol=1e-4, rtol=1e-4)


def test_export_with_bpe_tokenizer_generates_the_same_text_in_transformers(tmp_path, tiny_text):
    """End to end: AutoTokenizer + AutoModelForCausalLM on the exported folder continue a prompt exactly as we do."""
    from scratchllm.generate import generate_text
    from scratchllm.tokenizer import train_bpe

    tok = train_bpe(tiny_text[:5000], 300, progress=False)
    model = ours(vocab_size=tok.vocab_size, block_size=64)
    export_hf(model, tmp_path, tok)
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    prompt = "First Citizen:\nBefore we proceed"
    ids = hf_tok(prompt, return_tensors="pt").input_ids
    assert ids[0].tolist() == tok.encode(prompt)
    out = hf.generate(ids, max_new_tokens=20, min_new_tokens=20, do_sample=False, pad_token_id=0)
    theirs = hf_tok.decode(out[0, ids.shape[1]:])
    assert theirs == generate_text(model, tok, prompt, 20, temperature=0)
