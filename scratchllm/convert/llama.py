"""Hugging Face Llama-body families (Llama, Arcee, Qwen3, Apertus) <-> scratchllm: config.json and state dicts.

All four are pre-norm RoPE + RMSNorm decoders with Llama's tensor names; they differ in the MLP (gated SwiGLU for
Llama and Qwen3, up -> act -> down for Arcee and Apertus) and in the per-head q/k RMSNorm (Qwen3, Apertus) that sits
where ours does: after the projection, before the rotation. Our fused c_attn (q, k, v stacked on dim 0) splits into
q_proj, k_proj, v_proj, and our SwiGLU c_fc (gate, value) into gate_proj, up_proj. No q/k permutation is needed:
our rotary pairs (x_i, x_{i + hd/2}) are HF's rotate_half layout, not Meta's interleaved one.
"""

from __future__ import annotations

import torch

from scratchllm.config import InputError
from scratchllm.convert.families import Family, hf_option
from scratchllm.model import GPT, GPTConfig, swiglu_hidden

HIDDEN_ACT = {"swiglu": "silu", "gelu": "gelu_pytorch_tanh", "relu": "relu", "relu2": "relu2"}
FROM_GATED = {"silu": "swiglu"}
FROM_NON_GATED = {"gelu_pytorch_tanh": "gelu", "gelu_new": "gelu", "gelu_fast": "gelu", "relu": "relu",
                  "relu2": "relu2"}
NORMS = {"apertus": ("attention_layernorm", "feedforward_layernorm")}  # the others: Llama's names
LLAMA_NORMS = ("input_layernorm", "post_attention_layernorm")
ROPE_THETA, RMS_EPS = 10000.0, 1e-5  # model.py's rope_tables base and RMSNorm eps


def gated(family: Family) -> bool:
    return family.needs["activation"] == ("swiglu",)


def hidden_size(config: GPTConfig) -> int:
    return swiglu_hidden(config.n_embd) if config.activation == "swiglu" else 4 * config.n_embd


def to_hf_config(config: GPTConfig, family: Family, eos_token_id: int | None = None) -> dict:
    hf = {
        "architectures": [family.architecture], "model_type": family.model_type,
        "vocab_size": config.vocab_size, "hidden_size": config.n_embd, "intermediate_size": hidden_size(config),
        "num_hidden_layers": config.n_layer, "num_attention_heads": config.n_head,
        "num_key_value_heads": config.n_head, "head_dim": config.head_dim, "hidden_act": HIDDEN_ACT[config.activation],
        "max_position_embeddings": config.block_size, "rms_norm_eps": RMS_EPS,
        "rope_parameters": {"rope_type": "default", "rope_theta": ROPE_THETA},
        "attention_bias": config.bias, "attention_dropout": config.dropout, "initializer_range": 0.02,
        "tie_word_embeddings": config.tie_weights, "use_cache": True, "pad_token_id": None,
        "bos_token_id": eos_token_id, "eos_token_id": eos_token_id, "dtype": "float32",
    }
    if "bias" not in family.needs:  # Llama and Arcee carry the MLP's biases too
        hf["mlp_bias"] = config.bias
    if family.model_type == "qwen3":
        hf |= {"use_sliding_window": False, "sliding_window": None, "layer_types": ["full_attention"] * config.n_layer}
    return hf


def _rope(hf: dict) -> None:
    """Refuse any RoPE but the plain one of base 10000 (5.x "rope_parameters" or 4.x "rope_theta"/"rope_scaling")."""
    params = hf.get("rope_parameters") or {"rope_type": "default", "rope_theta": hf.get("rope_theta")}
    hf_option(params, "rope_type", "default", ("default",))
    hf_option(params, "rope_theta", None, (ROPE_THETA,))
    hf_option(hf, "rope_scaling", None, (None,))


def from_hf_config(hf: dict, family: Family) -> GPTConfig:
    """An HF config.json dict of a Llama-body family -> GPTConfig; settings we cannot reproduce are an InputError."""
    n_embd, n_head = hf.get("hidden_size", 4096), hf.get("num_attention_heads", 32)
    acts = FROM_GATED if gated(family) else FROM_NON_GATED
    hf_option(hf, "hidden_act", "silu", tuple(acts))
    hf_option(hf, "num_key_value_heads", n_head, (n_head,))
    hf_option(hf, "head_dim", n_embd // n_head, (n_embd // n_head,))
    hf_option(hf, "rms_norm_eps", None, (RMS_EPS,))
    hf_option(hf, "use_sliding_window", False, (False,))
    _rope(hf)
    bias = hf.get("attention_bias", False)
    if "bias" in family.needs:
        hf_option(hf, "attention_bias", False, (False,))
    else:
        hf_option(hf, "mlp_bias", False, (bias,))
    config = GPTConfig(
        vocab_size=hf.get("vocab_size", 32000), block_size=hf.get("max_position_embeddings", 2048),
        n_layer=hf.get("num_hidden_layers", 32), n_head=n_head, n_embd=n_embd, dropout=0.0, bias=bias, norm="pre",
        norm_type="rmsnorm", activation=acts[hf.get("hidden_act", "silu")], positions="rope",
        qk_norm=family.needs["qk_norm"] == (True,), tie_weights=hf.get("tie_word_embeddings", False))
    hf_option(hf, "intermediate_size", None, (hidden_size(config),))
    return config


def name_map(config: GPTConfig, family: Family) -> list[tuple[str, tuple[str, ...]]]:
    """Each of our tensor names with the HF tensors it is made of, in order (several: stacked on dim 0).

    Example: ("transformer.h.0.attn.c_attn.weight", ("model.layers.0.self_attn.q_proj.weight", ...k_proj, ...v_proj)).
    """
    pairs = [("transformer.wte.weight", ("model.embed_tokens.weight",)),
             ("transformer.ln_f.weight", ("model.norm.weight",))]
    if not config.tie_weights:
        pairs.append(("lm_head.weight", ("lm_head.weight",)))
    ln_1, ln_2 = NORMS.get(family.model_type, LLAMA_NORMS)
    mlp_in = ("gate_proj", "up_proj") if config.activation == "swiglu" else ("up_proj",)
    for i in range(config.n_layer):
        ours, hf = f"transformer.h.{i}.", f"model.layers.{i}."
        pairs += [(f"{ours}ln_1.weight", (f"{hf}{ln_1}.weight",)), (f"{ours}ln_2.weight", (f"{hf}{ln_2}.weight",))]
        for kind in ("weight", "bias") if config.bias else ("weight",):
            pairs += [(f"{ours}attn.c_attn.{kind}", tuple(f"{hf}self_attn.{p}_proj.{kind}" for p in "qkv")),
                      (f"{ours}attn.c_proj.{kind}", (f"{hf}self_attn.o_proj.{kind}",)),
                      (f"{ours}mlp.c_fc.{kind}", tuple(f"{hf}mlp.{p}.{kind}" for p in mlp_in)),
                      (f"{ours}mlp.c_proj.{kind}", (f"{hf}mlp.down_proj.{kind}",))]
        if config.qk_norm:
            pairs += [(f"{ours}attn.{n}.weight", (f"{hf}self_attn.{n}.weight",)) for n in ("q_norm", "k_norm")]
    return pairs


def to_hf_state_dict(model: GPT, family: Family) -> dict[str, torch.Tensor]:
    """Our weights under the family's names: c_attn and a SwiGLU c_fc split into equal parts, the tied head omitted."""
    state, out = model.state_dict(), {}
    for ours, theirs in name_map(model.config, family):
        for name, part in zip(theirs, state[ours].detach().cpu().chunk(len(theirs)), strict=True):
            out[name] = part.contiguous()
    return out


def from_hf_state_dict(tensors: dict[str, torch.Tensor], config: GPTConfig, family: Family) -> dict[str, torch.Tensor]:
    """HF tensors -> our names, split projections stacked back; a missing tensor is an InputError naming it."""
    ours = {}
    for name, theirs in name_map(config, family):
        if missing := [t for t in theirs if t not in tensors]:
            raise InputError(f"model.safetensors lacks {missing[0]}, which config.json implies")
        ours[name] = torch.cat([tensors[t] for t in theirs]) if len(theirs) > 1 else tensors[theirs[0]]
    return ours
