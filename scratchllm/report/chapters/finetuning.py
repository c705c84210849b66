"""The chapter "Teaching it to answer": instruction finetuning, told from a finetune run folder (the run itself, or
the chat/ stage the quickstart leaves inside it): the chat template's turn tokens, the loss mask of a real training
conversation with the trained tokens in colour, the finetune's loss curve, held-out accuracy of the base model, the
finetuned model and the majority answer by question type with 95% intervals, and real answers before and after.
A run with no finetune gets the template, built on its own tokenizer, and a note saying how to make one.
"""

from __future__ import annotations

from scratchllm.chat import add_chat_tokens, mask_spans
from scratchllm.config import InputError
from scratchllm.report.collect import RunSummary
from scratchllm.report.pdf import Book
from scratchllm.report.tables import clean, figure, fmt, spread
from scratchllm.runfolder import is_finite
from scratchllm.tokenizer.chat_tokens import ASSISTANT, CHAT_TOKENS, END, SYSTEM, USER

TITLE = "Teaching it to answer"
ROLES = {SYSTEM: "opens an optional system turn: standing instructions", USER: "opens what the user asks",
         ASSISTANT: "opens the model's reply: generation starts after it",
         END: "closes every turn; the model writes it to say its answer is done"}
MODELS = (("base", "base, few-shot"), ("finetuned", "finetuned"), ("majority", "majority answer"))


def _template(book: Book, tokenizer) -> None:
    if tokenizer is None:
        book.note("tokenizer.json is missing or unreadable, so the turn tokens cannot be shown with their ids.")
        return
    chat = add_chat_tokens(tokenizer)
    book.table(["token", "id", "what it marks"], [[t, fmt(chat.special_tokens[t]), ROLES[t]] for t in CHAT_TOKENS],
               "The turn tokens, appended after the base vocabulary: every id the base model knew keeps its meaning, "
               "and the new rows of the embedding start as the mean of the old ones.", "prose")


def mask_pieces(ft: RunSummary) -> list[tuple[str, str]]:
    """The first training conversation of a finetune run as training rendered and cut it (qa_eval.json's
    mask_example, decoded with the run's tokenizer), as (text, "trained" | "untrained") pieces; an InputError says
    why not."""
    if ft.qa_eval is None:
        raise InputError("qa_eval.json, which keeps the first training conversation, is missing or unreadable")
    if ft.tokenizer is None:
        raise InputError("the run folder's tokenizer.json is missing or unreadable")
    example = ft.qa_eval.get("mask_example")
    if not isinstance(example, dict):
        raise InputError("this finetune's qa_eval.json has no mask_example (its first training conversation, "
                         "which newer finetunes record)")
    ids, mask = example.get("ids"), example.get("mask")
    if not (isinstance(ids, list) and isinstance(mask, list) and ids and len(ids) == len(mask)
            and all(isinstance(i, int) and 0 <= i < ft.tokenizer.vocab_size for i in ids)):
        raise InputError("qa_eval.json's mask_example is not ids of the run's tokenizer with a mask as long")
    return [(text, "trained" if on else "untrained") for text, on in mask_spans(ft.tokenizer, ids, mask)]


def _mask(book: Book, ft: RunSummary) -> None:
    mask = (ft.config.get("data") or {}).get("mask", "assistant")
    book.para("Finetuning uses the same loss as pretraining, with one change: a **mask** chooses which next tokens "
              "count. With `--mask assistant` only the reply and its `<|end|>` are trained, so the model learns to "
              "answer rather than to write questions; `--mask all` trains on the whole conversation. This run used "
              f"`--mask {mask}`. Below is its first training conversation, cut to the context as training cuts it: "
              "the trained tokens are in green bold, the rest in grey.")
    try:
        book.spans(mask_pieces(ft), f"a training conversation, --mask {mask}")
    except InputError as e:
        book.note(f"The loss mask cannot be shown: {e}.")


def _loss(book: Book, ft: RunSummary) -> None:
    if not figure(book, ft, "loss", "The finetune's training loss per step (on the trained tokens only), the loss "
                  "of the held-out conversations at each evaluation, and the learning rate (grey, right axis)."):
        book.note("The finetune's run folder holds no loss figure (its metrics.jsonl is missing or empty).")
    if ft.evals:
        rows = [[fmt(e.get("step")), fmt(e.get("train_loss")), fmt(e.get("val_loss"))] for e in spread(ft.evals, 8)]
        book.table(["step", "training answers", "held-out answers"], rows, "Loss on the trained tokens at each "
                   "evaluation (nats per token).")


def _cell(row) -> str:
    """An accuracy with its 95% interval: "42% (33–51%)"; "–" when not measured."""
    if not isinstance(row, dict) or not is_finite(row.get("accuracy")):
        return "–"
    low, high = (row.get("interval") or [None, None])[:2]
    span = f" ({100 * low:.0f}–{100 * high:.0f}%)" if is_finite(low) and is_finite(high) else ""
    return f"{100 * row['accuracy']:.0f}%{span}"


def accuracy_rows(qa_eval: dict) -> list[list[str]]:
    """One row per question type, then "all": [type, questions, then an accuracy cell per model in MODELS]."""
    by_type = {m: t for m, t in (qa_eval.get("by_type") or {}).items() if isinstance(t, dict)}
    kinds = [k for k in dict.fromkeys(k for t in by_type.values() for k in t) if k != "all"] + ["all"]
    rows = []
    for kind in kinds:
        n = next((t[kind].get("n") for t in by_type.values() if isinstance(t.get(kind), dict)), None)
        rows.append([kind, fmt(n)] + [_cell((by_type.get(m) or {}).get(kind)) for m, _ in MODELS])
    return rows


def _accuracy(book: Book, qa_eval: dict) -> None:
    book.para("The finetuned model is asked each held-out question in the chat template; the base model gets the "
              "same question in a few-shot prompt (three solved examples, then the question). An answer counts when "
              "it equals the expected one after lower-casing and dropping punctuation. The **majority answer** "
              "replies to every question of a type with that type's commonest training answer: the score of a "
              "model that learned the format but nothing else.")
    book.table(["question type", "questions", *[label for _, label in MODELS]], accuracy_rows(qa_eval),
               "Exact-match accuracy on held-out questions, with 95% (Wilson) intervals.")
    facts = [f"{100 * v:.0f}% of the finetuned answers ended with `<|end|>`" if is_finite(v := qa_eval.get(
        "end_rate")) else "", f"{100 * v:.0f}% stopped at a turn token the model wrote itself (template leakage)"
        if is_finite(v := qa_eval.get("leak_rate")) else ""]
    bpb = qa_eval.get("base_corpus_bpb") or {}
    if is_finite(bpb.get("base")) and is_finite(bpb.get("finetuned")):
        facts.append(f"on the base corpus's held-out text the model went from {bpb['base']:.3f} to "
                     f"{bpb['finetuned']:.3f} bits per byte: what answering cost it at its first job")
    if any(facts):
        book.para("Of the held-out questions, " + "; ".join(f for f in facts if f) + ".")


def _examples(book: Book, qa_eval: dict) -> None:
    examples = [e for e in qa_eval.get("examples") or [] if isinstance(e, dict)][:12]
    if not examples:
        book.note("qa_eval.json holds no example answers.")
        return
    rows = [[clean(e.get(k, "–"), 160) for k in ("kind", "question", "gold", "base", "finetuned")] for e in examples]
    book.table(["type", "question", "expected", "before (base)", "after (finetuned)"], rows,
               "Held-out questions with the base model's answer before finetuning and the finetuned model's after.",
               "prose")


def write(book: Book, run: RunSummary) -> None:
    book.chapter(TITLE)
    book.para("A pretrained model continues text: asked a question, it writes more text that looks like its corpus. "
              "**Instruction finetuning** teaches it a format instead: conversations with turns, where a question is "
              "followed by an answer and the answer ends. The weights and the training loop stay the same; what "
              "changes is the data (rendered conversations), four new tokens that mark the turns, and a loss mask.")
    ft = run.chat
    book.section("The chat template")
    _template(book, (ft or run).tokenizer)
    if ft is None:
        book.note("This run has no finetune: neither a qa_eval.json nor a chat/ stage is in its folder. `scratchllm "
                  f"finetune --run {run.run_dir} --data shakespeare-qa --out {run.run_dir / 'chat'}` makes one, and "
                  "the next report tells it here.")
        return
    book.section("The loss mask")
    _mask(book, ft)
    book.section("The finetune's loss")
    _loss(book, ft)
    if ft.qa_eval is None:
        book.note("qa_eval.json is missing or unreadable: the finetune was not scored, so there is no accuracy "
                  "to compare and no answers to show.")
        return
    book.section("Base against finetuned")
    _accuracy(book, ft.qa_eval)
    book.section("Answers before and after")
    _examples(book, ft.qa_eval)
