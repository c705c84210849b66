"""Hugging Face GPT-2 <-> scratchllm: config and state-dict adapters, and folder export / import.

Our parameter names already are GPT-2's; the one change to the weights is the transpose that HF's Conv1D layers
need (they store (in, out); nn.Linear stores (out, in)). GPT-2 has biases everywhere, so bias=False exports as
zeros, and an import whose biases are all zero comes back as bias=False. Options GPT-2 cannot express are refused
by name. transformers is never imported here: the files are plain JSON and safetensors, and no pickle is read.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from scratchllm.config import InputError, atomic_write_bytes, write_json
from scratchllm.model import GPT, GPTConfig
from scratchllm.tokenizer import RegexTokenizer, Tokenizer, load_tokenizer
from scratchllm.tokenizer.hf_export import export_hf as export_hf_tokenizer

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
ACTIVATIONS = {"gelu": "gelu_new", "relu": "relu"}  # ours -> HF; GPT-2's "gelu_new" is the tanh approximation
HF_GELU_TANH = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
OUR_TOKENIZER = "scratchllm_tokenizer.json"  # our own file, beside HF's: import-hf restores it exactly


def check_gpt2_compatible(config: GPTConfig) -> None:
    """Raise an InputError naming every option GPT-2's architecture has no slot for."""
    problems = []
    for name, gpt2 in (("positions", "learned"), ("norm", "pre"), ("norm_type", "layernorm")):
        if getattr(config, name) != gpt2:
            problems.append(f"{name}={getattr(config, name)} (GPT-2 has {gpt2})")
    if config.activation not in ACTIVATIONS:
        problems.append(f"activation={config.activation} (GPT-2 has gelu or relu)")
    if config.qk_norm:
        problems.append("qk_norm=true (GPT-2 has no q/k norm)")
    if problems:
        raise InputError("GPT-2 cannot express this model: " + "; ".join(problems))


def to_hf_config(config: GPTConfig, eos_token_id: int | None = None) -> dict:
    check_gpt2_compatible(config)
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": config.vocab_size, "n_positions": config.block_size, "n_ctx": config.block_size,
        "n_embd": config.n_embd, "n_layer": config.n_layer, "n_head": config.n_head, "n_inner": None,
        "activation_function": ACTIVATIONS[config.activation], "layer_norm_epsilon": 1e-5,
        "resid_pdrop": config.dropout, "embd_pdrop": config.dropout, "attn_pdrop": config.dropout,
        "initializer_range": 0.02, "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False, "tie_word_embeddings": config.tie_weights, "use_cache": True,
        "bos_token_id": eos_token_id, "eos_token_id": eos_token_id, "torch_dtype": "float32",
    }


def _hf_option(hf: dict, key: str, default, allowed) -> None:
    if hf.get(key, default) not in allowed:
        raise InputError(f"config.json: {key}={hf.get(key)!r} is not supported (scratchllm needs {allowed[0]!r})")


def from_hf_config(hf: dict) -> GPTConfig:
    """An HF GPT-2 config.json dict -> GPTConfig; settings we cannot reproduce exactly are an InputError."""
    if hf.get("model_type") != "gpt2":
        raise InputError(f"config.json: model_type {hf.get('model_type')!r} is not gpt2; only GPT-2 can be imported")
    _hf_option(hf, "activation_function", "gelu_new", (*HF_GELU_TANH, "relu"))
    _hf_option(hf, "n_inner", None, (None, 4 * hf.get("n_embd", 768)))
    _hf_option(hf, "layer_norm_epsilon", 1e-5, (1e-5,))
    _hf_option(hf, "scale_attn_weights", True, (True,))
    _hf_option(hf, "scale_attn_by_inverse_layer_idx", False, (False,))
    return GPTConfig(
        vocab_size=hf.get("vocab_size", 50257), block_size=hf.get("n_positions", 1024), n_layer=hf.get("n_layer", 12),
        n_head=hf.get("n_head", 12), n_embd=hf.get("n_embd", 768), dropout=0.0, bias=True, norm="pre",
        norm_type="layernorm", activation="relu" if hf.get("activation_function") == "relu" else "gelu",
        positions="learned", tie_weights=hf.get("tie_word_embeddings", True))


def to_hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our state dict with Conv1D weights transposed, zero biases where we have none, the tied head omitted."""
    check_gpt2_compatible(model.config)
    out = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and model.config.tie_weights:
            continue
        out[name] = (t.t() if name.endswith(CONV1D) else t).detach().cpu().contiguous()
    if not model.config.bias:
        for name, t in list(out.items()):
            if name.endswith(".weight") and not name.startswith(("lm_head", "transformer.wte", "transformer.wpe")):
                width = t.shape[1] if name.endswith(CONV1D) else t.shape[0]
                out[name[: -len("weight")] + "bias"] = torch.zeros(width, dtype=t.dtype)
    return out


def from_hf_state_dict(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF GPT-2 tensors (with or without the "transformer." prefix) -> our names, Conv1D transposed back."""
    ours = {}
    for name, t in tensors.items():
        if name.endswith((".attn.bias", ".attn.masked_bias")):  # causal-mask buffers of old transformers files
            continue
        name = name if name.startswith(("transformer.", "lm_head.")) else "transformer." + name
        ours[name] = t.t().contiguous() if name.endswith(CONV1D) else t
    return ours


def export_hf(model: GPT, out_dir: str | os.PathLike, tokenizer: Tokenizer | None = None) -> Path:
    """Write config.json + model.safetensors that transformers' AutoModelForCausalLM.from_pretrained loads; a
    byte-level BPE tokenizer also goes out as HF tokenizer.json (AutoTokenizer), and every tokenizer as our own file."""
    out_dir = Path(out_dir)
    eos = tokenizer.special_tokens.get("<|endoftext|>") if tokenizer is not None else None
    hf_config = to_hf_config(model.config, eos)
    atomic_write_bytes(out_dir / "model.safetensors", save_safetensors(to_hf_state_dict(model), {"format": "pt"}))
    write_json(out_dir / "config.json", hf_config)
    if tokenizer is not None:
        tokenizer.save(out_dir / OUR_TOKENIZER)
    if isinstance(tokenizer, RegexTokenizer):
        export_hf_tokenizer(tokenizer, out_dir / "tokenizer.json")
    return out_dir


def _read_hf_weights(hf_dir: Path) -> dict[str, torch.Tensor]:
    path = hf_dir / "model.safetensors"
    if not path.is_file():
        if (hf_dir / "pytorch_model.bin").is_file():
            raise InputError(f"{hf_dir} has only pytorch_model.bin (a pickle), which scratchllm never loads; "
                             "save it with safe_serialization=True to get model.safetensors")
        raise InputError(f"no model.safetensors in {hf_dir}")
    try:
        return load_safetensors(path.read_bytes())
    except Exception as e:  # safetensors raises its own error types for every kind of damage
        raise InputError(f"{path} is not a readable safetensors file: {str(e).splitlines()[0]}") from None


def _read_hf_config(hf_dir: Path) -> dict:
    try:
        return json.loads((hf_dir / "config.json").read_text())
    except FileNotFoundError:
        raise InputError(f"no config.json in {hf_dir}") from None
    except ValueError as e:
        raise InputError(f"{hf_dir / 'config.json'} is not valid JSON: {e}") from None


def _read_tokenizer(hf_dir: Path) -> tuple[Tokenizer | None, str | None]:
    """Our own tokenizer file if the folder has one; otherwise None and a note on what was left behind."""
    if (hf_dir / OUR_TOKENIZER).is_file():
        return load_tokenizer(hf_dir / OUR_TOKENIZER), None
    found = [n for n in ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer.model") if (hf_dir / n).is_file()]
    if found:
        return None, ("tokenizer not imported: scratchllm cannot read Hugging Face tokenizer files "
                      f"({', '.join(found)}); generate with --prompt-ids")
    return None, "no tokenizer in the folder; generate with --prompt-ids"


def import_hf(hf_dir: str | os.PathLike) -> tuple[GPT, Tokenizer | None, list[str]]:
    """An HF GPT-2 folder -> (our GPT with its weights, our tokenizer or None, notes for the user)."""
    hf_dir = Path(hf_dir)
    config = from_hf_config(_read_hf_config(hf_dir))
    tensors = from_hf_state_dict(_read_hf_weights(hf_dir))
    if not any(t.any() for n, t in tensors.items() if n.endswith(".bias")):
        config = dataclasses.replace(config, bias=False)
        tensors = {n: t for n, t in tensors.items() if not n.endswith(".bias")}
    if config.tie_weights:
        tensors.pop("lm_head.weight", None)
    model = GPT(config)
    own = model.state_dict()
    needed = set(own) - ({"lm_head.weight"} if config.tie_weights else set())
    if missing := sorted(needed - set(tensors)):
        raise InputError(f"{hf_dir / 'model.safetensors'} lacks {len(missing)} tensor(s), e.g. {missing[0]}")
    if bad := [n for n in needed if tensors[n].shape != own[n].shape]:
        raise InputError(f"{hf_dir / 'model.safetensors'}: {bad[0]} has shape {tuple(tensors[bad[0]].shape)}, "
                         f"config.json implies {tuple(own[bad[0]].shape)}")
    model.load_state_dict({n: tensors[n] for n in needed}, strict=False)
    tokenizer, note = _read_tokenizer(hf_dir)
    return model, tokenizer, [note] if note else []

