"""Every exportable architecture against its transformers family: tiny random models, export -> AutoModelForCausalLM
and AutoTokenizer -> equal logits and greedy tokens; HF -> ours -> HF round trips; refusals with one line, exit 2."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.checkpoint import save_model
from scratchllm.cli import main
from scratchllm.config import InputError
from scratchllm.convert import export_hf, family_for, import_hf
from scratchllm.generate import generate
from scratchllm.model import GPT, GPTConfig
from scratchllm.tokenizer import train_bpe

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.peer
ROPE_RMS = {"positions": "rope", "norm_type": "rmsnorm"}
VARIANTS = {  # id -> (our model options, the transformers class that must load it)
    "gpt2-gelu": ({}, "GPT2LMHeadModel"),
    "gpt2-relu2-bias": ({"activation": "relu2", "bias": True}, "GPT2LMHeadModel"),
    "neox": ({"positions": "rope"}, "GPTNeoXForCausalLM"),
    "neox-relu2-bias-untied": ({"positions": "rope", "activation": "relu2", "bias": True, "tie_weights": False},
                               "GPTNeoXForCausalLM"),
    "llama": ({**ROPE_RMS, "activation": "swiglu"}, "LlamaForCausalLM"),
    "llama-bias-untied": ({**ROPE_RMS, "activation": "swiglu", "bias": True, "tie_weights": False},
                          "LlamaForCausalLM"),
    "arcee-speedrun": ({**ROPE_RMS, "activation": "relu2"}, "ArceeForCausalLM"),
    "arcee-gelu-bias": ({**ROPE_RMS, "activation": "gelu", "bias": True}, "ArceeForCausalLM"),
    "arcee-relu-untied": ({**ROPE_RMS, "activation": "relu", "tie_weights": False}, "ArceeForCausalLM"),
    "qwen3": ({**ROPE_RMS, "activation": "swiglu", "qk_norm": True}, "Qwen3ForCausalLM"),
    "apertus": ({**ROPE_RMS, "activation": "relu2", "qk_norm": True}, "ApertusForCausalLM"),
}
ZERO_BIASES = ("GPT2LMHeadModel", "GPTNeoXForCausalLM")  # always have biases: ours export as zeros when we have none
UNSUPPORTED = [  # our options no HF family computes, and the field the refusal must name
    ({"norm": "post"}, "norm=post"),
    ({"norm": "post", **ROPE_RMS, "activation": "swiglu"}, "norm=post"),
    ({"norm_type": "rmsnorm"}, "norm_type=rmsnorm"),
    ({"activation": "swiglu"}, "activation=swiglu"),
    ({"qk_norm": True}, "qk_norm=true"),
    ({"positions": "rope", "activation": "swiglu"}, "activation=swiglu"),
    ({**ROPE_RMS, "activation": "swiglu", "qk_norm": True, "bias": True}, "bias=true"),
]


@pytest.fixture(scope="module")
def tok(tiny_text):
    return train_bpe(tiny_text[:5000] + "<|endoftext|>", 300, special_tokens=["<|endoftext|>", "<|user|>"],
                     progress=False)


def ours(vocab_size: int, seed: int = 0, **kw) -> GPT:
    """A tiny random model; norms and biases moved off their 1 / 0 init so that a wrong mapping shows."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=64, n_layer=2, n_head=4, n_embd=32, **kw))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "ln_" in name or "_norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


@pytest.mark.parametrize("variant", VARIANTS)
def test_export_loads_in_transformers_with_equal_logits_and_greedy_tokens(tmp_path, tok, variant):
    kw, architecture = VARIANTS[variant]
    model = ours(tok.vocab_size + 13, **kw)  # a padded vocabulary: 13 ids the tokenizer never makes
    export_hf(model, tmp_path, tok)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert type(hf).__name__ == architecture
    if model.config.bias or architecture not in ZERO_BIASES:
        assert hf.num_parameters() == model.num_params()
    prompt = "First Citizen:\nBefore we proceed any further, hear me speak."
    ids = hf_tok(prompt, return_tensors="pt").input_ids
    assert ids[0].tolist() == tok.encode(prompt)
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids)[0], atol=1e-4, rtol=1e-4)
    start = ids[:, :16]  # 16 + 24 new tokens fit GPT-2's 64 learned positions; an explicit mask, or HF would mask
    out = hf.generate(start, attention_mask=torch.ones_like(start), max_new_tokens=24, min_new_tokens=24,
                      do_sample=False, pad_token_id=0)  # every prompt token equal to pad_token_id
    assert out[0, 16:].tolist() == generate(model, start, 24, temperature=0)


@pytest.mark.parametrize("variant", [v for v, (kw, arch) in VARIANTS.items()
                                     if kw.get("bias") or arch not in ZERO_BIASES])
def test_hf_model_round_trips_through_ours_with_equal_logits_and_identical_tensors(tmp_path, variant):
    """A random model built by transformers from our exported config: import -> equal logits -> export -> the
    same tensors, bit for bit."""
    kw, _ = VARIANTS[variant]
    export_hf(ours(61, **kw), tmp_path / "shape")
    config = transformers.AutoConfig.from_pretrained(tmp_path / "shape")
    torch.manual_seed(1)
    hf = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    hf.save_pretrained(tmp_path / "hf")
    model, _, _ = import_hf(tmp_path / "hf")
    ids = torch.randint(0, 61, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(ids)[0], hf(ids).logits, atol=1e-4, rtol=1e-4)
    export_hf(model, tmp_path / "back")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back")
    theirs = back.state_dict()
    assert set(theirs) == set(hf.state_dict())
    for name, t in hf.state_dict().items():
        assert torch.equal(theirs[name], t), name


@pytest.mark.parametrize("variant", VARIANTS)
def test_ours_round_trips_through_the_hf_folder_bit_exact(tmp_path, tok, variant):
    model = ours(tok.vocab_size, **VARIANTS[variant][0])
    export_hf(model, tmp_path, tok)
    back, tok2, notes = import_hf(tmp_path)
    assert back.config == model.config and tok2.encode("ROMEO: <|user|>") == tok.encode("ROMEO: <|user|>")
    assert not notes
    for name, t in model.state_dict().items():
        assert torch.equal(back.state_dict()[name], t), name


def test_rope_layout_is_hf_rotate_half_without_permutation(tmp_path):
    """Positions matter: the same token at positions 0..T gives different HF logits, equal to ours, and swapping
    our q/k halves (the interleaved-vs-half mistake) breaks the equality."""
    model = ours(61, **ROPE_RMS, activation="swiglu")
    C, hd = model.config.n_embd, model.config.head_dim
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.c_attn.weight[: 2 * C] *= 20  # sharp attention, so positions move the logits
    export_hf(model, tmp_path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.tensor([[7, 3, 9] * 15])
    with torch.no_grad():
        theirs = hf(ids).logits
        torch.testing.assert_close(theirs, model(ids)[0], atol=1e-4, rtol=1e-4)
        assert not torch.allclose(theirs[0, 3], theirs[0, 30], atol=1e-2)
        for block in model.transformer.h:
            qk = block.attn.c_attn.weight[: 2 * C]
            qk.copy_(qk.view(-1, 2, hd // 2, C).flip(1).reshape_as(qk))  # (2H, halves, hd/2, C): halves swapped
        assert not torch.allclose(theirs, model(ids)[0], atol=1e-2)


def test_speedrun_recipe_exports_as_arcee():
    assert family_for(GPTConfig(positions="rope", norm_type="rmsnorm", activation="relu2")).model_type == "arcee"


@pytest.mark.parametrize("kw, needle", UNSUPPORTED)
def test_unsupported_variants_exit_2_with_one_line_naming_the_field(tmp_path, capsys, kw, needle):
    save_model(tmp_path / "ckpt", ours(61, **kw), None)
    assert main(["export", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "hf").exists()
    with pytest.raises(InputError, match="no Hugging Face family"):
        family_for(GPTConfig(**kw))


@pytest.mark.parametrize("key, value", [("rms_norm_eps", 1e-6), ("num_key_value_heads", 2),
                                        ("rope_parameters", {"rope_type": "default", "rope_theta": 500000.0}),
                                        ("hidden_act", "silu"), ("model_type", "mistral")])
def test_import_refuses_settings_we_cannot_compute_by_name(tmp_path, key, value):
    export_hf(ours(61, **ROPE_RMS, activation="relu2"), tmp_path)
    hf = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**hf, key: value}))
    with pytest.raises(InputError, match=key.split("_")[0] if key == "rope_parameters" else key):
        import_hf(tmp_path)


@settings(max_examples=150, deadline=None)
@given(text=st.lists(st.one_of(st.text(max_size=40), st.sampled_from(["<|endoftext|>", "<|user|>", " ", "\n\n"])),
                     max_size=6).map("".join))
def test_pretrained_tokenizer_fast_encodes_like_ours_on_any_text(hf_tokenizer_folder, text):
    ours_tok, folder = hf_tokenizer_folder
    theirs = transformers.PreTrainedTokenizerFast.from_pretrained(folder)
    assert theirs(text).input_ids == ours_tok.encode(text)
    assert theirs.decode(ours_tok.encode(text)) == ours_tok.decode(ours_tok.encode(text))


@pytest.fixture(scope="module")
def hf_tokenizer_folder(tok, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf_tok")
    export_hf(ours(tok.vocab_size, **ROPE_RMS, activation="relu2"), folder, tok)
    return tok, folder


def test_tokenizer_config_names_our_special_tokens_and_carries_a_given_chat_template(tmp_path, tok):
    template = "{% for m in messages %}<|user|>{{ m['content'] }}<|endoftext|>{% endfor %}"
    export_hf(ours(tok.vocab_size), tmp_path, tok, chat_template=template)
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert hf_tok.eos_token == "<|endoftext|>" and hf_tok.eos_token_id == tok.special_tokens["<|endoftext|>"]
    assert "<|user|>" in hf_tok.all_special_tokens
    assert hf_tok.model_max_length == 64 and hf_tok.chat_template == template
    hf = transformers.AutoConfig.from_pretrained(tmp_path)
    assert hf.eos_token_id == hf_tok.eos_token_id


def test_model_card_says_family_params_run_and_bits_per_byte(tmp_path, tok):
    run = tmp_path / "runs" / "demo"
    model = ours(tok.vocab_size, **ROPE_RMS, activation="relu2")
    save_model(run / "checkpoints" / "latest", model, tok)
    (run / "metrics.jsonl").write_text("")
    (run / "summary.json").write_text(json.dumps({"final_val_bpb": 2.0481, "steps": 871, "tokens": 3_567_616,
                                                  "corpus": {"name": "shakespeare"}}))
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "hf")]) == 0
    card = (tmp_path / "hf" / "README.md").read_text()
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert f"{hf.num_parameters():,}" in card and type(hf).__name__ in card
    assert "`demo`" in card and "2.0481" in card and "871 steps" in card
    assert "AutoTokenizer.from_pretrained" in card


def test_import_reads_a_transformers_4_config_with_rope_theta_at_the_top(tmp_path):
    """Files saved by transformers 4.x say "rope_theta": 10000.0 and "rope_scaling": null instead of 5.x's
    rope_parameters: the same model comes back."""
    model = ours(61, **ROPE_RMS, activation="swiglu")
    export_hf(model, tmp_path)
    hf = json.loads((tmp_path / "config.json").read_text())
    hf.pop("rope_parameters")
    (tmp_path / "config.json").write_text(json.dumps({**hf, "rope_theta": 10000.0, "rope_scaling": None}))
    back, _, _ = import_hf(tmp_path)
    assert back.config == model.config
    for name, t in model.state_dict().items():
        assert torch.equal(back.state_dict()[name], t), name


def test_model_card_of_a_checkpoint_outside_a_run_says_so_and_loads_without_hf_tokenizer(tmp_path):
    save_model(tmp_path / "ckpt", ours(61, **ROPE_RMS, activation="relu2", qk_norm=True), None)
    assert main(["export", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(tmp_path / "hf")]) == 0
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "ApertusForCausalLM" in card and "outside a run folder" in card and "bits per byte" not in card
    assert type(transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf")).__name__ in card
