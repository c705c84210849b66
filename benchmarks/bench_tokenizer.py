"""Tokenizer speed beside HF tokenizers, measured side by side in one process on the built-in corpus (5 MB).

Training: vocab 4096 on the whole corpus, ours and HF alternated for a few rounds; the ratio of the best times
(and of the medians) is the figure that matters, since absolute times drift with the machine and its load.
Encoding: our tiktoken fast path and our plain-Python reference against HF's single-call and batch encode.
Run: .venv/bin/python benchmarks/bench_tokenizer.py  -> prints a table, writes benchmarks/results/tokenizer.json
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from scratchllm.data import load_corpus
from scratchllm.tokenizer import train_bpe
from scratchllm.tokenizer.compare import line_pieces, train_hf_bpe

VOCAB, ROUNDS = 4096, 5
RESULTS = Path(__file__).resolve().parent / "results" / "tokenizer.json"


def machine_info() -> dict:
    import tiktoken
    import tokenizers
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"python": sys.version.split()[0], "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "cpu_model": cpu, "tiktoken": tiktoken.__version__,
            "tokenizers": tokenizers.__version__, "load_avg_1min": os.getloadavg()[0]}


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def bench_training(text: str) -> dict:
    """Alternate ours and HF `ROUNDS` times so that both see the same machine load."""
    ours_s, hf_s = [], []
    for _ in range(ROUNDS):
        ours, t = timed(train_bpe, text, VOCAB, progress=False)
        ours_s.append(t)
        hf, t = timed(train_hf_bpe, text, VOCAB)
        hf_s.append(t)
    return {
        "ours_s": ours_s, "hf_s": hf_s, "ours_best_s": min(ours_s), "hf_best_s": min(hf_s),
        "ratio_best": min(ours_s) / min(hf_s), "ratio_median": statistics.median(ours_s) / statistics.median(hf_s),
        "tokenizers": (ours, hf),
    }


def mb_per_s(n_bytes: int, fn, *args, repeats: int = 2, **kwargs) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        out, t = timed(fn, *args, **kwargs)
        best = min(best, t)
    return n_bytes / 1e6 / best, out


def bench_encoding(text: str, ours, hf) -> dict:
    n = len(text.encode("utf-8"))
    pieces = line_pieces(text)
    threads = os.cpu_count() or 1
    fast, ids = mb_per_s(n, ours.encode, text)
    ours._cache.clear()
    reference_cold, ref_ids = mb_per_s(n, ours.encode_reference, text, repeats=1)
    reference_warm, _ = mb_per_s(n, ours.encode_reference, text, repeats=1)
    batch, _ = mb_per_s(n, ours.encode_batch, pieces, num_threads=threads)
    hf_single, _ = mb_per_s(n, hf.encode, text)
    hf_batch, _ = mb_per_s(n, hf.encode_batch, pieces)
    return {
        "bytes": n, "fast_encode_mb_s": fast, "reference_encode_mb_s_cold_cache": reference_cold,
        "reference_encode_mb_s_warm_cache": reference_warm, "tiktoken_batch_mb_s": batch,
        "hf_single_encode_mb_s": hf_single, "hf_batch_encode_mb_s": hf_batch,
        "fast_vs_hf_single": fast / hf_single, "fast_equals_reference": ids == ref_ids,
    }


def main() -> None:
    text = load_corpus("shakespeare").text
    info = machine_info()
    train = bench_training(text)
    ours, hf = train.pop("tokenizers")
    enc = bench_encoding(text, ours, hf)
    rows = [
        (f"train vocab 4096, ours (best of {ROUNDS})", f"{train['ours_best_s']:.3f} s"),
        ("train vocab 4096, HF tokenizers (best)", f"{train['hf_best_s']:.3f} s"),
        ("train ratio ours/HF, best | median", f"{train['ratio_best']:.2f}x | {train['ratio_median']:.2f}x"),
        ("fast encode (tiktoken, one call)", f"{enc['fast_encode_mb_s']:.2f} MB/s"),
        ("HF encode (one call)", f"{enc['hf_single_encode_mb_s']:.2f} MB/s"),
        ("fast / HF single-call", f"{enc['fast_vs_hf_single']:.1f}x"),
        ("tiktoken encode_batch (64 KB pieces)", f"{enc['tiktoken_batch_mb_s']:.2f} MB/s"),
        ("HF encode_batch (64 KB pieces)", f"{enc['hf_batch_encode_mb_s']:.2f} MB/s"),
        ("reference encode, cold | warm cache", f"{enc['reference_encode_mb_s_cold_cache']:.2f} | "
                                                f"{enc['reference_encode_mb_s_warm_cache']:.2f} MB/s"),
        ("fast ids == reference ids (5 MB)", str(enc["fast_equals_reference"])),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": info, "vocab_size": VOCAB, "corpus_bytes": enc["bytes"],
                                   "training": train, "encoding": enc}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
