"""Export a GPT to a Hugging Face folder and import one back: config.json, model.safetensors, the tokenizer and a
model card, written and read without importing transformers (plain JSON and safetensors; no pickle is read).

families.py picks the family, gpt2.py and llama.py map config and weights, chat_template.py gives a finetuned
model's turns to transformers, card.py writes README.md; this module owns the folder: which files, in which order
(config.json last), and what an import accepts.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from scratchllm.config import InputError, atomic_write_bytes, atomic_write_text, write_json
from scratchllm.convert import gpt2, llama, neox
from scratchllm.convert.card import model_card
from scratchllm.convert.chat_template import jinja_template
from scratchllm.convert.families import Family, family_for, family_of
from scratchllm.model import GPT, GPTConfig
from scratchllm.tokenizer import RegexTokenizer, Tokenizer, load_tokenizer
from scratchllm.tokenizer.chat_tokens import END, has_chat_tokens
from scratchllm.tokenizer.hf_export import export_hf as export_hf_tokenizer
from scratchllm.tokenizer.hf_export import tokenizer_config

OUR_TOKENIZER = "scratchllm_tokenizer.json"  # our own file, beside HF's: import-hf restores it exactly


def to_hf(model: GPT, eos_token_id: int | None = None) -> tuple[Family, dict, dict[str, torch.Tensor]]:
    """(family, config.json dict, tensors under HF names); an InputError in one line if no family fits."""
    family = family_for(model.config)
    if family.body == "llama":
        return family, llama.to_hf_config(model.config, family, eos_token_id), llama.to_hf_state_dict(model, family)
    body = gpt2 if family.body == "gpt2" else neox
    return family, body.to_hf_config(model.config, eos_token_id), body.to_hf_state_dict(model)


def _check_tokenizer(model: GPT, tokenizer: Tokenizer | None, chat_template: str | None) -> None:
    if tokenizer is not None and tokenizer.vocab_size > model.config.vocab_size:
        raise InputError(f"the tokenizer has {tokenizer.vocab_size} ids but the model only "
                         f"{model.config.vocab_size}: they do not belong together")
    if chat_template is not None and not isinstance(tokenizer, RegexTokenizer):
        raise InputError("a chat template needs a byte-level BPE tokenizer (it goes into tokenizer_config.json)")


def _write_hf_tokenizer(tokenizer: RegexTokenizer, out_dir: Path, model_max_length: int,
                        chat_template: str | None) -> None:
    """tokenizer.json + tokenizer_config.json; a chat tokenizer's config gets <|end|> as its eos (bos stays
    <|endoftext|>), so generation stops at the end of a turn."""
    export_hf_tokenizer(tokenizer, out_dir / "tokenizer.json")
    config = tokenizer_config(tokenizer, model_max_length, chat_template,
                              eos=END if has_chat_tokens(tokenizer) else None)
    write_json(out_dir / "tokenizer_config.json", config)


def export_hf(model: GPT, out_dir: str | os.PathLike, tokenizer: Tokenizer | None = None,
              source: str | os.PathLike | None = None, chat_template: str | None = None) -> Path:
    """Write a folder that transformers' AutoModelForCausalLM.from_pretrained loads: config.json, model.safetensors
    and README.md; a byte-level BPE tokenizer also as tokenizer.json + tokenizer_config.json (AutoTokenizer), and
    every tokenizer as our own file. `source` (the run or checkpoint folder) feeds the model card.

    A tokenizer with the chat tokens (a finetuned run) brings its chat template (chat_template.py) unless one is
    given, and makes <|end|> the eos of config.json and the tokenizer."""
    out_dir = Path(out_dir)
    hf_tokenizer = isinstance(tokenizer, RegexTokenizer)
    if has_chat_tokens(tokenizer) and hf_tokenizer and chat_template is None:
        chat_template = jinja_template(tokenizer)
    _check_tokenizer(model, tokenizer, chat_template)
    specials = tokenizer.special_tokens if tokenizer is not None else {}
    family, hf_config, tensors = to_hf(model, specials.get("<|endoftext|>"))
    if has_chat_tokens(tokenizer):
        hf_config["eos_token_id"] = specials[END]
    atomic_write_bytes(out_dir / "model.safetensors", save_safetensors(tensors, {"format": "pt"}))
    if tokenizer is not None:
        tokenizer.save(out_dir / OUR_TOKENIZER)
    if hf_tokenizer:
        _write_hf_tokenizer(tokenizer, out_dir, model.config.block_size, chat_template)
    card = model_card(model, family, out_dir, Path(source) if source is not None else None, hf_tokenizer,
                      chat_template is not None)
    atomic_write_text(out_dir / "README.md", card)
    write_json(out_dir / "config.json", hf_config)
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


def config_from_hf(hf: dict) -> tuple[Family, GPTConfig]:
    """An HF config.json dict -> its family and our config; checked before any weight is read."""
    family = family_of(hf)
    if family.body == "llama":
        return family, llama.from_hf_config(hf, family)
    return family, (gpt2 if family.body == "gpt2" else neox).from_hf_config(hf)


def tensors_from_hf(tensors: dict[str, torch.Tensor], config: GPTConfig, family: Family
                    ) -> tuple[GPTConfig, dict[str, torch.Tensor]]:
    """HF tensors -> our names; a GPT-2 or NeoX whose biases are all zero comes back as bias=False."""
    if family.body == "llama":
        return config, llama.from_hf_state_dict(tensors, config, family)
    tensors = gpt2.from_hf_state_dict(tensors) if family.body == "gpt2" else neox.from_hf_state_dict(tensors, config)
    if not any(t.any() for n, t in tensors.items() if n.endswith(".bias")):
        config = dataclasses.replace(config, bias=False)
        tensors = {n: t for n, t in tensors.items() if not n.endswith(".bias")}
    return config, tensors


def import_hf(hf_dir: str | os.PathLike) -> tuple[GPT, Tokenizer | None, list[str]]:
    """An HF folder of a family we read -> (our GPT with its weights, our tokenizer or None, notes for the user)."""
    hf_dir = Path(hf_dir)
    family, config = config_from_hf(_read_hf_config(hf_dir))
    config, tensors = tensors_from_hf(_read_hf_weights(hf_dir), config, family)
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
