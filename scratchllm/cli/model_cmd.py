"""`scratchllm generate`, `export` and `import-hf`: thin calls of generate.py, checkpoint.py and convert.py.

torch and the model code are imported inside the handlers so that `scratchllm --help` stays fast.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path


def _add_source(p, required: bool = True) -> None:
    src = p.add_mutually_exclusive_group(required=required)
    src.add_argument("--run", metavar="DIR", help="a run folder: its checkpoints/latest/ is used")
    src.add_argument("--checkpoint", metavar="PATH", help="a checkpoint folder (model.safetensors + config.json)")


def register(sub) -> None:
    """Add generate, export and import-hf to the top-level parser."""
    p = sub.add_parser("generate", help="sample text from a trained model",
                       description="Continue a prompt with a trained model. Example: scratchllm generate --run "
                                   "runs/demo --prompt 'ROMEO:' --max-new-tokens 200 --temperature 0.8 --stream")
    _add_source(p)
    prompt = p.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", metavar="TEXT", help="text to continue ('' starts a fresh document)")
    prompt.add_argument("--prompt-ids", metavar="IDS", help="token ids to continue, e.g. '464,3290' (no tokenizer "
                                                             "needed; prints ids)")
    p.add_argument("--max-new-tokens", type=int, default=200, metavar="N", help="tokens to add (default 200)")
    p.add_argument("--temperature", type=float, default=0.8, metavar="T", help="0 = greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=None, metavar="K", help="sample among the K likeliest tokens only")
    p.add_argument("--top-p", type=float, default=None, metavar="P", help="nucleus sampling: smallest set with mass P")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="seed for reproducible sampling")
    p.add_argument("--stream", action="store_true", help="print tokens as they are produced")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole context per token (slow reference)")
    p.set_defaults(func=_generate)

    p = sub.add_parser("export", help="write a checkpoint as a Hugging Face folder (GPT-2, Llama, Arcee, ...)",
                       description="Export to a folder transformers loads with AutoModelForCausalLM and AutoTokenizer, "
                                   "in the family that computes the same function (learned positions: GPT-2; RoPE + "
                                   "LayerNorm: GPT-NeoX; RoPE + RMSNorm: Llama, Arcee, Qwen3 or Apertus by MLP and "
                                   "q/k norm). "
                                   "Example: scratchllm export --run runs/demo --format hf --out demo-hf")
    _add_source(p)
    p.add_argument("--format", choices=["hf"], default="hf",
                   help="output format (hf: config.json, model.safetensors, tokenizer, README.md)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    p.set_defaults(func=_export)

    p = sub.add_parser("import-hf", help="read a Hugging Face folder into a scratchllm checkpoint",
                       description="Import GPT-2, GPT-NeoX, Llama, Arcee, Qwen3 or Apertus weights (config.json + "
                                   "model.safetensors) from a local folder, if scratchllm computes the same function. "
                                   "Example: scratchllm import-hf ~/models/gpt2 --out runs/gpt2/checkpoints/latest")
    p.add_argument("hf_dir", metavar="DIR", help="folder with config.json and model.safetensors")
    p.add_argument("--out", required=True, metavar="DIR", help="checkpoint folder to write")
    p.set_defaults(func=_import_hf)


def _parse_ids(text: str, vocab_size: int) -> list[int]:
    from scratchllm.config import InputError

    try:
        ids = [int(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise InputError(f"--prompt-ids expects integers separated by commas or spaces; got {text!r}") from None
    if bad := [i for i in ids if not 0 <= i < vocab_size]:
        raise InputError(f"--prompt-ids: id {bad[0]} is outside the model's vocabulary of {vocab_size}")
    return ids


def _warn_line(message, *args, **kwargs) -> None:
    sys.stderr.write(f"scratchllm generate: warning: {message}\n")


def _generate(args) -> int:
    from scratchllm.checkpoint import load_model
    from scratchllm.config import InputError
    from scratchllm.generate import iter_tokens, stream_text
    from scratchllm.tokenizer import load_tokenizer

    model, tok, _ = load_model(args.run or args.checkpoint)
    if tok is None and args.run and Path(args.run, "tokenizer.json").is_file():  # the run's own tokenizer
        tok = load_tokenizer(Path(args.run, "tokenizer.json"))
    stops = tuple(tok.special_tokens.values()) if tok is not None else ()
    kw = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed, stop_tokens=stops,
              use_cache=not args.no_cache)
    with warnings.catch_warnings():
        warnings.showwarning = _warn_line
        if args.prompt_ids is not None:
            ids = _parse_ids(args.prompt_ids, model.config.vocab_size)
            for token in iter_tokens(model, ids, args.max_new_tokens, **kw):
                print(token, end="\n" if args.stream else " ", flush=args.stream)
            print()
            return 0
        if tok is None:
            raise InputError("this checkpoint has no tokenizer (imported from Hugging Face?): use --prompt-ids")
        sys.stdout.write(args.prompt)
        for piece in stream_text(model, tok, args.prompt, args.max_new_tokens, **kw):
            sys.stdout.write(piece)
            if args.stream:
                sys.stdout.flush()
        sys.stdout.write("\n")
    return 0


def _export(args) -> int:
    from scratchllm.checkpoint import load_model
    from scratchllm.convert import export_hf, family_for

    source = args.run or args.checkpoint
    model, tok, _ = load_model(source)
    out = export_hf(model, args.out, tok, source=source)
    print(f"wrote {out}/ as {family_for(model.config).architecture} (config.json, model.safetensors, README.md): "
          f"load it with transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})")
    return 0


def _import_hf(args) -> int:
    from scratchllm.checkpoint import save_model
    from scratchllm.convert import import_hf

    model, tok, notes = import_hf(args.hf_dir)
    for note in notes:
        sys.stderr.write(f"scratchllm import-hf: note: {note}\n")
    out = save_model(args.out, model, tok, extra={"imported_from": str(args.hf_dir)})
    print(f"wrote {out}/ ({model.num_params() / 1e6:.1f}M parameters, {model.config.n_layer} layers)")
    return 0
