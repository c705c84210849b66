"""The doctor's finetuning rules: what went wrong in a finetune, from its metrics and its qa_eval.json.

A finetune's qa_eval.json (answers that end or leak a turn token, training records dropped or cut, bits/byte on the
base corpus before and after) feeds rules a pretraining run has no data for: never_ends, template_leak, all_masked,
truncated, forgetting. `diagnose_finetune` runs them all; doctor.py adds them to a run's diagnosis when the run
folder holds a qa_eval.json (runfolder.read_qa_eval). Pure rules as in doctor.py; this module does not finetune or
score.
"""

from __future__ import annotations

from scratchllm.doctor_rules import DEFAULT, Finding, Thresholds, no_target
from scratchllm.runfolder import is_finite


def _part(qa_eval: dict, key: str) -> dict:
    """qa_eval[key] when it is a JSON object, else {}: a hand-edited or damaged file gives no finding, no error."""
    value = qa_eval.get(key)
    return value if isinstance(value, dict) else {}


def rule_never_ends(qa_eval: dict, th: Thresholds = DEFAULT) -> list[Finding]:
    """Fires when fewer than `end_rate` of the held-out answers end with <|end|> (qa_eval.json's end_rate)."""
    rate, leaks = qa_eval.get("end_rate"), qa_eval.get("leak_rate")
    if not is_finite(rate) or rate >= th.end_rate:
        return []
    also = f"; {leaks:.0%} stopped at another turn token instead" if is_finite(leaks) and leaks > 0 else ""
    return [Finding(
        rule="never_ends", severity="warning", symptom="the finetuned model's answers do not end: <|end|> is missing",
        evidence=(f"{rate:.0%} of {qa_eval.get('questions', '?')} held-out answers ended with <|end|> (threshold "
                  f"{th.end_rate:.0%}){also}"),
        cause="too few finetuning steps to learn the template, or training data whose answers are not closed "
        "with <|end|> (a mask that leaves the end token untrained)",
        fix="finetune longer (more --minutes) with --mask assistant, whose mask trains each answer's <|end|>; "
        "`scratchllm finetune --show-mask` shows whether it is trained")]


def rule_template_leak(qa_eval: dict, th: Thresholds = DEFAULT) -> list[Finding]:
    """Fires when more than `leak_rate` of the held-out answers stopped at a turn token the model wrote itself."""
    rate = qa_eval.get("leak_rate")
    if not is_finite(rate) or rate <= th.leak_rate:
        return []
    return [Finding(
        rule="template_leak", severity="warning", symptom="the model writes the template itself (<|user|> and "
        "other turn tokens inside its answers)",
        evidence=f"{rate:.0%} of {qa_eval.get('questions', '?')} held-out answers stopped at a turn token "
        f"(threshold {th.leak_rate:.0%})",
        cause="training text where a turn token follows an answer directly (turns run together without <|end|>), "
        "or --mask all on multi-turn data, which trains the model to write the user's turns too",
        fix="close every turn with <|end|> (chat.render_conversation does) and finetune with --mask assistant")]


def rule_all_masked(metrics: list[dict], qa_eval: dict) -> list[Finding]:
    """Fires on any logged step with no trained target, or on training conversations with no trained token
    (qa_eval.json records.untrained): either is exact, so there is no threshold."""
    steps = [r.get("step") for r in metrics if r.get("kind") == "train" and no_target(r)]
    untrained = _part(qa_eval, "records").get("untrained")
    untrained = untrained if isinstance(untrained, int) else 0
    if not steps and not untrained:
        return []
    shown = ", ".join(map(str, steps[:8])) + (" ..." if len(steps) > 8 else "")
    evidence = [f"{len(steps)} logged step(s) with loss 0 and gradient norm 0 (no trained target): {shown}"
                if steps else "", f"{untrained} training conversation(s) have no trained token" if untrained else ""]
    return [Finding(
        rule="all_masked", severity="warning", symptom="some finetuning batches had every target masked",
        evidence="; ".join(e for e in evidence if e),
        cause="conversations without an assistant answer (or whose answer was cut away) in the training data: a "
        "batch of only such conversations trains nothing, yet spends a step of the schedule",
        fix="give every training record an assistant reply; raise train.batch_size so a batch rarely holds "
        "only untrained conversations")]


def rule_truncated(qa_eval: dict, th: Thresholds = DEFAULT) -> list[Finding]:
    """Fires when more than `truncated_share` of the training conversations were dropped or cut to fit the context
    (qa_eval.json records: conversations, dropped, cut)."""
    records = _part(qa_eval, "records")
    total, dropped, cut = (records.get(k) for k in ("conversations", "dropped", "cut"))
    if not (isinstance(total, int) and total > 0 and isinstance(dropped, int) and isinstance(cut, int)):
        return []
    share = (dropped + cut) / total
    if share <= th.truncated_share:
        return []
    return [Finding(
        rule="truncated", severity="warning", symptom="training conversations did not fit the model's context",
        evidence=(f"of {total:,} training conversations {dropped:,} were dropped (the answer alone is too long) and "
                  f"{cut:,} lost the front of their question: {share:.0%} (threshold {th.truncated_share:.0%})"),
        cause="questions and answers longer than the base model's context (model.block_size tokens)",
        fix="finetune a base model with a longer context (model.block_size) or a larger vocabulary (fewer tokens "
        "per question), or shorten the records")]


def rule_forgetting(qa_eval: dict, th: Thresholds = DEFAULT) -> list[Finding]:
    """Fires when the finetuned model's bits/byte on the base corpus's held-out text (qa_eval.json base_corpus_bpb,
    both models scored on the same tokens) rose more than `forget_rise` above the base model's."""
    bpb = _part(qa_eval, "base_corpus_bpb")
    before, after = bpb.get("base"), bpb.get("finetuned")
    if not (is_finite(before) and is_finite(after)) or before <= 0 or after <= before * (1 + th.forget_rise):
        return []
    return [Finding(
        rule="forgetting", severity="warning", symptom="finetuning made the model worse at its base corpus",
        evidence=(f"bits per byte on the base run's held-out text {before:.3f} -> {after:.3f} "
                  f"({after / before - 1:+.0%}; threshold +{th.forget_rise:.0%}); base run "
                  f"{qa_eval.get('base_run', 'not recorded')}"),
        cause="too many finetuning steps at too high a learning rate on text unlike the base corpus",
        fix="finetune for fewer --minutes or at a lower LR (--set train.lr=...), or mix base-corpus text "
        "into the finetuning data")]


def diagnose_finetune(metrics: list[dict], qa_eval: dict, th: Thresholds = DEFAULT) -> list[Finding]:
    """The finetuning rules on a finetune run's metrics and its qa_eval.json; pure."""
    return (rule_never_ends(qa_eval, th) + rule_template_leak(qa_eval, th) + rule_all_masked(metrics, qa_eval)
            + rule_truncated(qa_eval, th) + rule_forgetting(qa_eval, th))

