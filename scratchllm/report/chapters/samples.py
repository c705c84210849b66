"""The chapter "Samples": how the model writes (sampling from the source, the KV cache and its measured speed-up),
then what this run wrote at the end of training and, for contrast, early on.
"""

from __future__ import annotations

from scratchllm.report.collect import RunSummary
from scratchllm.report.pdf import Book
from scratchllm.report.tables import bench_pivot, clean, listing
from scratchllm.viz import visible

TITLE = "Samples"


def _sample(book: Book, sample: dict, limit: int) -> None:
    prompt = str(sample.get("prompt", ""))
    book.sample(clean(prompt, 300), clean(sample.get("text", ""), limit), visible(prompt)[:60])


def write(book: Book, run: RunSummary) -> None:
    book.chapter(TITLE)
    book.para("The trained model writes by repeating one move: compute the probabilities of the next token, draw "
              "one (sharpened by a temperature below 1, or restricted to the k likeliest or to the top-p of the "
              "probability mass), append it and go again. Below, the prompt is in bold and the rest is the model's.")
    listing(book, run, "sample_next_token", "choosing the next token")
    book.para("Generating token by token naively recomputes the keys and values of the whole context for every new "
              "token. A **KV cache** keeps them: each step feeds only the newest token, which attends to the cached "
              "keys and values, so the work per token no longer grows with the length of the text.")
    bench_pivot(book, run, "generate", "kv_cache", [("context", "context", 0), ("naive_tokens_per_s",
                "naive tokens/s", 1), ("kv_cache_tokens_per_s", "cached tokens/s", 1), ("speedup", "speed-up", 1)],
                "Decoding speed with and without the KV cache")
    bench_pivot(book, run, "generate", "vs_transformers", [("prompt", "prompt", 0), ("new_tokens", "new tokens", 0),
                ("ours_tokens_per_s", "ours tokens/s", 1), ("hf_tokens_per_s", "HF tokens/s", 1),
                ("ratio", "ours / HF", 2), ("same_tokens", "same tokens", 0)],
                "Our KV-cache generation beside Hugging Face transformers' generate() on the same weights")
    samples = list({(s.get("step"), str(s.get("prompt", "")), str(s.get("text", ""))): s for s in run.samples}.values())
    steps = sorted({s.get("step") for s in samples if isinstance(s.get("step"), int)})
    if not steps:
        book.note("samples.jsonl is missing or empty: this run wrote no samples.")
        return
    final = [s for s in samples if s.get("step") == steps[-1]][:6]
    book.section(f"At the end of training (step {steps[-1]:,})")
    for s in final:
        _sample(book, s, 1400)
    if len(steps) > 1:
        early = [s for s in samples if s.get("step") == steps[0]][:2]
        book.section(f"Early in training (step {steps[0]:,})")
        book.para("For contrast, what the same model wrote before it had learned much:")
        for s in early:
            _sample(book, s, 700)
