"""Which Hugging Face family computes exactly the function a GPTConfig describes, and why none does when none does.

Each `Family` lists the values of our config fields it can express; `family_for` picks the first family that
expresses them all, and otherwise raises one line naming the nearest families and the fields they lack, e.g.
"LlamaForCausalLM but for norm=post (LlamaForCausalLM has pre)". Weights and config.json: gpt2.py, neox.py, llama.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from scratchllm.config import InputError
from scratchllm.model import GPTConfig

NON_GATED = ("gelu", "relu", "relu2")


@dataclass(frozen=True)
class Family:
    model_type: str
    """config.json's "model_type", which AutoModelForCausalLM dispatches on."""
    architecture: str
    """The transformers class that loads it."""
    body: str
    """Which adapter module maps the weights: "gpt2", "neox" or "llama" (Llama's names, qkv and MLP split)."""
    needs: dict
    """Our config field -> the values this family can express."""


ROPE_RMS = {"positions": ("rope",), "norm": ("pre",), "norm_type": ("rmsnorm",)}
FAMILIES = (
    Family("gpt2", "GPT2LMHeadModel", "gpt2", {"positions": ("learned",), "norm": ("pre",),
           "norm_type": ("layernorm",), "activation": NON_GATED, "qk_norm": (False,)}),
    Family("gpt_neox", "GPTNeoXForCausalLM", "neox", {"positions": ("rope",), "norm": ("pre",),
           "norm_type": ("layernorm",), "activation": NON_GATED, "qk_norm": (False,)}),
    Family("llama", "LlamaForCausalLM", "llama", {**ROPE_RMS, "activation": ("swiglu",), "qk_norm": (False,)}),
    Family("arcee", "ArceeForCausalLM", "llama", {**ROPE_RMS, "activation": NON_GATED, "qk_norm": (False,)}),
    Family("qwen3", "Qwen3ForCausalLM", "llama",  # Qwen3's MLP has no biases
           {**ROPE_RMS, "activation": ("swiglu",), "qk_norm": (True,), "bias": (False,)}),
    Family("apertus", "ApertusForCausalLM", "llama",  # Apertus' MLP has no biases
           {**ROPE_RMS, "activation": NON_GATED, "qk_norm": (True,), "bias": (False,)}),
)
BY_TYPE = {f.model_type: f for f in FAMILIES}


def _show(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def mismatches(family: Family, config: GPTConfig) -> list[str]:
    """The fields of `config` that `family` cannot express, each as "field=ours (Family has a or b)"."""
    return [f"{name}={_show(getattr(config, name))} ({family.architecture} has "
            f"{' or '.join(_show(v) for v in allowed)})"
            for name, allowed in family.needs.items() if getattr(config, name) not in allowed]


def family_for(config: GPTConfig) -> Family:
    """The Hugging Face family that computes exactly this model; an InputError in one line if there is none.

    Example: rope + rmsnorm + swiglu -> llama; rope + rmsnorm + relu2 (the speedrun) -> arcee.
    """
    for family in FAMILIES:
        if not mismatches(family, config):
            return family
    fewest = min(len(mismatches(f, config)) for f in FAMILIES)
    nearest = [f"{f.architecture} but for " + "; ".join(mismatches(f, config))
               for f in FAMILIES if len(mismatches(f, config)) == fewest]
    raise InputError("no Hugging Face family computes this model exactly; nearest: " + " | ".join(nearest))


def family_of(hf_config: dict) -> Family:
    """The family of an HF config.json dict, by its model_type; others are an InputError naming what we read."""
    model_type = hf_config.get("model_type")
    if model_type not in BY_TYPE:
        raise InputError(f"config.json: model_type {model_type!r} cannot be imported; scratchllm reads "
                         + ", ".join(BY_TYPE))
    return BY_TYPE[model_type]


def hf_option(hf: dict, key: str, default, allowed) -> None:
    """Refuse a config.json setting we cannot reproduce exactly, naming it and the value we need."""
    if hf.get(key, default) not in allowed:
        raise InputError(f"config.json: {key}={hf.get(key, default)!r} is not supported (scratchllm needs "
                         f"{allowed[0]!r})")
