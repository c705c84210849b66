"""Hugging Face GPT-NeoX <-> scratchllm: the RoPE + LayerNorm family (Pythia's), with sequential residuals.

NeoX fuses q, k, v per head, (H, 3, hd) along the output rows, where our c_attn stacks them (3, H, hd): the rows
are permuted each way. Its rotary pairs are the same half layout as ours once partial_rotary_factor is 1 (its
default rotates a quarter). LayerNorm and MLP always have biases, so bias=False exports zeros and an import whose
biases are all zero comes back as bias=False (folder.py, as for GPT-2).
"""

from __future__ import annotations

import torch

from scratchllm.config import InputError
from scratchllm.convert.families import hf_option
from scratchllm.model import GPT, GPTConfig

ACTIVATIONS = {"gelu": "gelu_pytorch_tanh", "relu": "relu", "relu2": "relu2"}
HF_ACTIVATIONS = {"gelu_pytorch_tanh": "gelu", "gelu_new": "gelu", "gelu_fast": "gelu", "relu": "relu",
                  "relu2": "relu2"}
ROPE_THETA = 10000.0
NAMES = {"ln_1": "input_layernorm", "attn.c_attn": "attention.query_key_value", "attn.c_proj": "attention.dense",
         "ln_2": "post_attention_layernorm", "mlp.c_fc": "mlp.dense_h_to_4h", "mlp.c_proj": "mlp.dense_4h_to_h"}


def to_hf_config(config: GPTConfig, eos_token_id: int | None = None) -> dict:
    return {
        "architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox",
        "vocab_size": config.vocab_size, "hidden_size": config.n_embd, "intermediate_size": 4 * config.n_embd,
        "num_hidden_layers": config.n_layer, "num_attention_heads": config.n_head,
        "hidden_act": ACTIVATIONS[config.activation], "max_position_embeddings": config.block_size,
        "layer_norm_eps": 1e-5, "use_parallel_residual": False, "attention_bias": config.bias,
        "rope_parameters": {"rope_type": "default", "rope_theta": ROPE_THETA, "partial_rotary_factor": 1.0},
        "rotary_pct": 1.0, "rotary_emb_base": ROPE_THETA,  # the same, as transformers 4.x reads it
        "attention_dropout": config.dropout, "hidden_dropout": config.dropout, "initializer_range": 0.02,
        "tie_word_embeddings": config.tie_weights, "use_cache": True,
        "bos_token_id": eos_token_id, "eos_token_id": eos_token_id, "dtype": "float32",
    }


def from_hf_config(hf: dict) -> GPTConfig:
    """An HF GPT-NeoX config.json dict -> GPTConfig (bias=True); settings we cannot reproduce are an InputError."""
    n_embd = hf.get("hidden_size", 6144)
    rope = hf.get("rope_parameters") or {"rope_theta": hf.get("rotary_emb_base", ROPE_THETA),
                                         "partial_rotary_factor": hf.get("rotary_pct", 0.25)}
    hf_option(rope, "rope_type", "default", ("default",))
    hf_option(rope, "rope_theta", None, (ROPE_THETA,))
    hf_option(rope, "partial_rotary_factor", 1.0, (1.0,))
    hf_option(hf, "hidden_act", "gelu", tuple(HF_ACTIVATIONS))
    hf_option(hf, "use_parallel_residual", True, (False,))
    hf_option(hf, "layer_norm_eps", 1e-5, (1e-5,))
    hf_option(hf, "intermediate_size", None, (4 * n_embd,))
    return GPTConfig(
        vocab_size=hf.get("vocab_size", 50432), block_size=hf.get("max_position_embeddings", 2048),
        n_layer=hf.get("num_hidden_layers", 44), n_head=hf.get("num_attention_heads", 64), n_embd=n_embd,
        dropout=0.0, bias=True, norm="pre", norm_type="layernorm", activation=HF_ACTIVATIONS[hf["hidden_act"]],
        positions="rope", tie_weights=hf.get("tie_word_embeddings", False))


def _qkv_rows(t: torch.Tensor, n_head: int, to_neox: bool) -> torch.Tensor:
    """Permute c_attn's rows (weight (3C, C) or bias (3C,)): ours (3, H, hd) <-> NeoX's (H, 3, hd)."""
    first = (3, n_head) if to_neox else (n_head, 3)
    return t.reshape(*first, -1, *t.shape[1:]).transpose(0, 1).reshape(t.shape).contiguous()


def to_hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our weights under NeoX's names, q/k/v rows per head, zero biases where we have none, tied head omitted."""
    config, out = model.config, {}
    for name, t in model.state_dict().items():
        t = t.detach().cpu()
        if name == "transformer.wte.weight":
            out["gpt_neox.embed_in.weight"] = t.contiguous()
        elif name == "lm_head.weight" and not config.tie_weights:
            out["embed_out.weight"] = t.contiguous()  # 4.x's name; 5.x renames it to lm_head on load
        elif name.startswith("transformer.ln_f."):
            out["gpt_neox.final_layer_norm." + name.rsplit(".", 1)[1]] = t.contiguous()
        elif name.startswith("transformer.h."):
            _, _, i, rest = name.split(".", 3)
            module, kind = rest.rsplit(".", 1)
            t = _qkv_rows(t, config.n_head, to_neox=True) if module == "attn.c_attn" else t.contiguous()
            out[f"gpt_neox.layers.{i}.{NAMES[module]}.{kind}"] = t
            if kind == "weight" and not config.bias and not module.startswith("attn."):  # attention_bias=false
                out[f"gpt_neox.layers.{i}.{NAMES[module]}.bias"] = torch.zeros(t.shape[0], dtype=t.dtype)
    if not config.bias:
        out["gpt_neox.final_layer_norm.bias"] = torch.zeros(config.n_embd)
    return out


def from_hf_state_dict(tensors: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """HF GPT-NeoX tensors -> our names (with attention biases of zero if the file has none)."""
    back = {v: k for k, v in NAMES.items()}
    ours = {}
    for name, t in tensors.items():
        if name == "gpt_neox.embed_in.weight":
            ours["transformer.wte.weight"] = t
        elif name in ("embed_out.weight", "lm_head.weight"):
            ours["lm_head.weight"] = t
        elif name.startswith("gpt_neox.final_layer_norm."):
            ours["transformer.ln_f." + name.rsplit(".", 1)[1]] = t
        elif name.startswith("gpt_neox.layers."):
            _, _, i, rest = name.split(".", 3)
            module, kind = rest.rsplit(".", 1)
            if module not in back:
                raise InputError(f"model.safetensors: {name} has no place in scratchllm's GPT")
            t = _qkv_rows(t, config.n_head, to_neox=False) if module == NAMES["attn.c_attn"] else t
            ours[f"transformer.h.{i}.{back[module]}.{kind}"] = t
    for i in range(config.n_layer):  # attention_bias=false: the same as biases of zero
        for module, width in (("attn.c_attn", 3 * config.n_embd), ("attn.c_proj", config.n_embd)):
            ours.setdefault(f"transformer.h.{i}.{module}.bias", torch.zeros(width))
    return ours
