"""The export folder's README.md: a Hugging Face model card saying what the model is, which run made it, its
bits per byte (the run folder's summary.json, when there is one) and how to load it with transformers (a chat
model: how to prompt it through its chat template).

It only writes text from the model, its family and the run folder; it converts nothing.
"""

from __future__ import annotations

from pathlib import Path

from scratchllm.convert.families import Family
from scratchllm.model import GPT
from scratchllm.runfolder import METRICS, SUMMARY, is_finite, read_json


def find_run(source: Path | None) -> Path | None:
    """The run folder behind `source`: itself, or the run of a checkpoint at RUN/checkpoints/NAME/ (a checkpoint's
    own config.json would pass is_run, so a run is the folder with a metrics.jsonl)."""
    if source is None:
        return None
    for candidate in (source, *source.resolve().parents[1:2]):
        if (candidate / METRICS).is_file():
            return candidate
    return None


def _shape(model: GPT) -> str:
    c = model.config
    parts = [f"{c.n_layer} layers", f"width {c.n_embd}", f"{c.n_head} heads of {c.head_dim}",
             f"context {c.block_size}", f"vocabulary {c.vocab_size}", f"{c.positions} positions", c.norm_type,
             c.activation + (" MLP" if c.activation != "swiglu" else "")]
    parts += ["q/k RMSNorm"] if c.qk_norm else []
    parts += ["tied head" if c.tie_weights else "untied head", "biases" if c.bias else "no biases"]
    return ", ".join(parts)


def _run_rows(run: Path | None) -> list[str]:
    if run is None:
        return ["| run | unknown (exported from a checkpoint outside a run folder) |"]
    rows = [f"| run | `{run.name}` |"]
    summary = read_json(run / SUMMARY)
    if not isinstance(summary, dict):
        return rows
    if is_finite(summary.get("final_val_bpb")):
        rows.append(f"| validation bits per byte | {summary['final_val_bpb']:.4f} (lower is better) |")
    if is_finite(summary.get("steps")) and is_finite(summary.get("tokens")):
        corpus = (summary.get("corpus") or {}).get("name", "an unnamed corpus")
        rows.append(f"| training | {summary['steps']:,} steps, {summary['tokens']:,} tokens of {corpus} |")
    return rows


def _usage(folder: str, has_hf_tokenizer: bool, chat: bool) -> str:
    if not has_hf_tokenizer:
        return ("```python\nimport torch\nfrom transformers import AutoModelForCausalLM\n\n"
                f"model = AutoModelForCausalLM.from_pretrained({folder!r})\n"
                "out = model.generate(torch.tensor([[0]]), max_new_tokens=100, do_sample=True)\n```\n\n"
                "The tokenizer is not byte-level BPE, so it travels only as scratchllm's own file "
                "(`scratchllm_tokenizer.json`): encode and decode with `scratchllm.tokenizer.load_tokenizer`.\n")
    prompt = ('messages = [{"role": "user", "content": "Who killed Duncan?"}]\n'
              "ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\", "
              "return_dict=True).input_ids\n") if chat else 'ids = tokenizer("ROMEO:", return_tensors="pt").input_ids\n'
    reply = "tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)" if chat else "tokenizer.decode(out[0])"
    note = ("\nThe chat template renders turns as scratchllm does (`<|user|>...<|end|><|assistant|>`), and "
            "`<|end|>` is the eos token, so generation stops at the end of the reply. Pass "
            "`sanitize_control_tokens=True` when messages may hold text like `<|end|>`: scratchllm encodes it as "
            "plain text.\n") if chat else ""
    return ("```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f"tokenizer = AutoTokenizer.from_pretrained({folder!r})\n"
            f"model = AutoModelForCausalLM.from_pretrained({folder!r})\n" + prompt +
            "out = model.generate(ids, max_new_tokens=100, do_sample=True, temperature=0.8)\n"
            f"print({reply})\n```\n" + note)


def model_card(model: GPT, family: Family, folder: Path, source: Path | None, has_hf_tokenizer: bool,
               chat: bool) -> str:
    """README.md for the export folder; a chat model's shows apply_chat_template."""
    rows = ["| | |", "|---|---|", f"| architecture | `{family.architecture}` (model_type `{family.model_type}`) |",
            f"| shape | {_shape(model)} |", f"| parameters | {model.num_params():,} |", *_run_rows(find_run(source))]
    return ("---\nlibrary_name: transformers\npipeline_tag: text-generation\ntags:\n- scratchllm\n---\n\n"
            f"# {folder.name}\n\nA small decoder-only transformer trained from scratch with scratchllm and exported "
            f"to the Hugging Face `{family.model_type}` family, which computes the same function (equal logits).\n\n"
            + "\n".join(rows) + "\n\n## Load it\n\n" + _usage(str(folder), has_hf_tokenizer, chat))
