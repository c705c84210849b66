"""Hugging Face GPT-2 <-> scratchllm: the config.json and state-dict adapters of the learned-position family.

Our parameter names already are GPT-2's; the one change to the weights is the transpose that HF's Conv1D layers
need (they store (in, out); nn.Linear stores (out, in)). GPT-2 has biases everywhere, so bias=False exports as
zeros, and an import whose biases are all zero comes back as bias=False (folder.py decides that).
"""

from __future__ import annotations

import torch

from scratchllm.convert.families import hf_option
from scratchllm.model import GPT, GPTConfig

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
ACTIVATIONS = {"gelu": "gelu_new", "relu": "relu", "relu2": "relu2"}  # ours -> HF; "gelu_new" is the tanh form
HF_ACTIVATIONS = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu_fast": "gelu", "relu": "relu",
                  "relu2": "relu2"}


def to_hf_config(config: GPTConfig, eos_token_id: int | None = None) -> dict:
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


def from_hf_config(hf: dict) -> GPTConfig:
    """An HF GPT-2 config.json dict -> GPTConfig (bias=True); settings we cannot reproduce are an InputError."""
    hf_option(hf, "activation_function", "gelu_new", tuple(HF_ACTIVATIONS))
    hf_option(hf, "n_inner", None, (None, 4 * hf.get("n_embd", 768)))
    hf_option(hf, "layer_norm_epsilon", 1e-5, (1e-5,))
    hf_option(hf, "scale_attn_weights", True, (True,))
    hf_option(hf, "scale_attn_by_inverse_layer_idx", False, (False,))
    return GPTConfig(
        vocab_size=hf.get("vocab_size", 50257), block_size=hf.get("n_positions", 1024), n_layer=hf.get("n_layer", 12),
        n_head=hf.get("n_head", 12), n_embd=hf.get("n_embd", 768), dropout=0.0, bias=True, norm="pre",
        norm_type="layernorm", activation=HF_ACTIVATIONS[hf.get("activation_function", "gelu_new")],
        positions="learned", tie_weights=hf.get("tie_word_embeddings", True))


def to_hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our state dict with Conv1D weights transposed, zero biases where we have none, the tied head omitted."""
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
