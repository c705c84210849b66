"""The chapter "Troubleshooting": a table of common symptoms with their likely causes and fixes, then what the
doctor (doctor.json) found in this run, with its evidence.
"""

from __future__ import annotations

from scratchllm.report.collect import RunSummary
from scratchllm.report.pdf import Book

TITLE = "Troubleshooting"


TROUBLES = [
    ("Loss becomes NaN or jumps up and stays high", "learning rate too high, too short a warm-up, or float16 "
     "overflow", "lower train LR 2-3×, lengthen warm-up, clip gradients at 1.0, use bfloat16 rather than float16 "
     "(the trainer rolls back and halves the LR by itself)"),
    ("Loss barely moves from the start", "learning rate far too low, or inputs and targets misaligned",
     "run scratchllm lr-find and take its suggestion; targets must be the inputs shifted by one token"),
    ("Train loss falls while validation loss rises", "overfitting: the model memorises a corpus too small "
     "for it", "more text, dropout 0.1-0.2, a smaller model, or stop at the best validation loss"),
    ("Samples repeat one phrase", "an undertrained or small model, or greedy decoding",
     "train longer; sample with temperature 0.8-1.0 and top-k 50 or top-p 0.9"),
    ("Samples are gibberish", "too few steps, or the wrong tokenizer for the checkpoint",
     "train longer; generate with the run folder so its own tokenizer.json is used"),
    ("Out of memory", "batch × context too large for the device", "smaller micro-batches with gradient "
     "accumulation, activation checkpointing, bfloat16"),
    ("Few tokens per second", "matrices too small for the hardware, Python overhead, too many or too few threads",
     "larger batches, fused SDPA attention, bfloat16 on CPUs with AMX or on GPUs"),
    ("“exceeds block_size” error", "a sequence longer than the model's context", "shorter prompts; generation "
     "crops the context by itself"),
    ("“cannot encode” with a char tokenizer", "characters absent from the training text", "use byte-level BPE, "
     "which can encode any text"),
    ("A resumed run behaves differently", "the config changed between the runs", "resume with the same config; "
     "--resume restores weights, optimiser state and random generators"),
]


def _findings(book: Book, run: RunSummary) -> None:
    if run.doctor is None:
        why = next((m for m in run.missing if m.startswith("doctor.json")), "doctor.json: not in the run folder")
        book.note(f"{why}. `scratchllm doctor RUN_DIR` examines the run and writes it.")
        return
    if not run.doctor:
        book.para("The doctor examined this run's metrics and samples and found nothing wrong.")
        return
    for f in run.doctor:
        book.bullets([f"**Evidence.** {f.get('evidence', '')}", f"**Likely cause.** {f.get('cause', '')}",
                      f"**Fix.** {f.get('fix', '')}"],
                     intro=f"**{str(f.get('severity', 'note')).capitalize()}: {f.get('symptom', '')}**")


def write(book: Book, run: RunSummary) -> None:
    book.chapter(TITLE)
    book.section("Symptom, likely cause, solution")
    book.table(["symptom", "likely cause", "solution"], [list(r) for r in TROUBLES], "Common problems in training "
               "a small language model.", "prose")
    book.section("What the doctor found in this run")
    _findings(book, run)
