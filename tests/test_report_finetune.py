"""The guide's chapter "Teaching it to answer", from REAL finetune run folders: a tiny base run (the `tiny` preset,
20 steps), finetuned for 30 steps on 40 number-word answers into the base run's chat/ folder, where the quickstart
puts its finetune. The chapter is built from the finetune's own folder and from the base run's (which then tells
its chat stage), and says what a folder lacks instead of failing."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from pypdf import PdfReader

from scratchllm.finetune import finetune
from scratchllm.report import CHAPTER_TITLES, build_report
from scratchllm.report.chapters.finetuning import TITLE, mask_pieces
from scratchllm.report.collect import collect_finetune, finetune_dir, is_finetune
from scratchllm.report.pdf import TRAINED

pytestmark = pytest.mark.usefixtures("one_thread")
NUMBER = CHAPTER_TITLES.index(TITLE) + 1  # the chapter's number in the guide


@pytest.fixture(scope="module")
def runs(tmp_path_factory, finetune_base):
    """The shared base run copied (the finetune writes into its chat/ folder), finetuned 30 steps into base/chat."""
    shared, data = finetune_base
    base = shutil.copytree(shared, tmp_path_factory.mktemp("report_ft") / "base")
    qa_eval = finetune(base, str(data), base / "chat", minutes=5, eval_questions=4,
                       overrides=["train.batch_size=4", "train.max_steps=30", "train.device=cpu"],
                       progress=False)["qa_eval"]
    return base, base / "chat", qa_eval


def _text(pdf) -> str:
    """The whole guide's text, whitespace removed."""
    return re.sub(r"\s+", "", "\n".join(page.extract_text() for page in PdfReader(pdf).pages))


def _chapter(pdf) -> str:
    """The text of the finetuning chapter, whitespace removed."""
    text = _text(pdf)
    start = text.index(f"CHAPTER{NUMBER}" + re.sub(r"\s+", "", TITLE))
    return text[start:text.index(f"CHAPTER{NUMBER + 1}")]


def _cells(chat, kind: str) -> list[str]:
    """The accuracy table's cells for one question type, computed from qa_eval.json itself: "42%(33–51%)" for
    the base model, the finetuned model and the majority answer, in the table's column order."""
    by_type = json.loads((chat / "qa_eval.json").read_text())["by_type"]
    return [f"{100 * c['accuracy']:.0f}%({100 * c['interval'][0]:.0f}–{100 * c['interval'][1]:.0f}%)"
            for c in (by_type[model][kind] for model in ("base", "finetuned", "majority"))]


def test_chapter_is_registered_before_troubleshooting():
    assert CHAPTER_TITLES[-2:] == (TITLE, "Troubleshooting")


def test_finetune_run_guide_tells_template_mask_loss_accuracy_and_answers(runs, tmp_path):
    _, chat, qa_eval = runs
    pdf = build_report(chat, tmp_path / "guide.pdf", bench_dir=tmp_path)
    chapter = _chapter(pdf)
    assert f"learnstoanswerquestions(chapter{NUMBER})" in _text(pdf)  # the first chapter's map of the guide
    for expected in ("<|user|>", "<|assistant|>", "<|end|>", "Thelossmask", f"Figure{NUMBER}.1", "Baseagainstfinetuned",
                     "95%(Wilson)", "Answersbeforeandafter"):
        assert expected in chapter
    for kind, row in qa_eval["by_type"]["finetuned"].items():  # every row of the accuracy table
        assert kind + str(row["n"]) + "".join(_cells(chat, kind)) in chapter
    for example in qa_eval["examples"]:
        assert re.sub(r"\s+", "", example["question"]) in chapter
    colour = " ".join(f"{c / 255:.4f}".rstrip("0").rstrip(".") for c in TRAINED) + " rg"
    pages = [p.get_contents().get_data() for p in PdfReader(pdf).pages]
    assert any(colour.encode() in page for page in pages)  # the trained tokens are set in their own colour


def test_mask_pieces_train_exactly_the_answer_and_its_end(runs):
    _, chat, _ = runs
    pieces = mask_pieces(collect_finetune(chat))
    assert [text for text, kind in pieces if kind == "trained"] == ["one<|end|>"]
    assert "".join(text for text, _ in pieces) == "<|endoftext|><|user|>Say the number 1 in words.<|end|>" \
                                                  "<|assistant|>one<|end|>"


def test_base_run_guide_tells_its_chat_stage(runs, tmp_path):
    """The quickstart's layout: the base run's guide finds chat/ and tells that finetune in its chapter."""
    base, chat, qa_eval = runs
    chapter = _chapter(build_report(base, tmp_path / "guide.pdf", bench_dir=tmp_path))
    everything = "all" + str(qa_eval["questions"]) + "".join(_cells(chat, "all"))
    assert "Answersbeforeandafter" in chapter and everything in chapter


def test_a_finetune_folder_missing_its_evaluation_and_mask_data_says_so(runs, tmp_path):
    _, chat, _ = runs
    broken = tmp_path / "chat"
    shutil.copytree(chat, broken)
    (broken / "qa_eval.json").unlink()
    chapter = _chapter(build_report(broken, tmp_path / "guide.pdf", bench_dir=tmp_path))
    assert "Thelossmaskcannotbeshown" in chapter and "qa_eval.jsonismissing" in chapter


def test_an_older_finetune_without_its_mask_example_gets_a_note_and_the_rest(runs, tmp_path):
    """Finetunes from before qa_eval.json kept mask_example: the chapter says so and still scores the finetune."""
    _, chat, _ = runs
    old = tmp_path / "chat"
    shutil.copytree(chat, old)
    qa_eval = json.loads((old / "qa_eval.json").read_text())
    del qa_eval["mask_example"]
    (old / "qa_eval.json").write_text(json.dumps(qa_eval))
    chapter = _chapter(build_report(old, tmp_path / "guide.pdf", bench_dir=tmp_path))
    assert "Thelossmaskcannotbeshown" in chapter and "nomask_example" in chapter
    assert "Baseagainstfinetuned" in chapter


def test_a_run_without_finetune_shows_the_template_and_how_to_make_one(runs, tmp_path):
    base, _, _ = runs
    plain = tmp_path / "plain"
    shutil.copytree(base, plain, ignore=shutil.ignore_patterns("chat"))
    chapter = _chapter(build_report(plain, tmp_path / "guide.pdf", bench_dir=tmp_path))
    assert "<|assistant|>" in chapter and "Thisrunhasnofinetune" in chapter and "scratchllmfinetune" in chapter


@pytest.mark.parametrize("tokenizer_file", ["[1, 2]", '{"special_tokens": ["<|user|>"]}', "not json"])
def test_a_damaged_tokenizer_json_makes_no_finetune_and_no_error(tmp_path, tokenizer_file):
    (tmp_path / "tokenizer.json").write_text(tokenizer_file)
    assert not is_finetune(tmp_path) and finetune_dir(tmp_path) is None
