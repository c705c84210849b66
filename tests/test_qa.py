"""The built-in question set: enough held-out questions of every kind, no test question seen in training, a
deterministic split; and scoring identities (normalisation, Wilson interval, majority baseline, few-shot prompt)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchllm.qa import (
    CORPUS_KINDS,
    KINDS,
    Question,
    accuracy_by_kind,
    corpus_qa,
    few_shot_prompt,
    first_line,
    in_test,
    is_correct,
    majority_answers,
    majority_replies,
    normalise,
    read_plays,
    shakespeare_qa,
    wilson_interval,
)


@pytest.fixture(scope="module")
def qa(shakespeare_text):
    return shakespeare_qa(seed=0, text=shakespeare_text)


def test_at_least_200_held_out_questions_across_every_kind(qa):
    counts = qa.counts()
    assert sum(counts["test"].values()) >= 200
    assert set(counts["test"]) == set(KINDS) == set(counts["train"])
    assert all(n >= 30 for n in counts["test"].values())


def test_no_question_or_passage_is_shared_between_train_and_test(qa):
    assert not {q.question for q in qa.train} & {q.question for q in qa.test}
    assert not {q.group for q in qa.train} & {q.group for q in qa.test}
    assert all(in_test(q.group, 0.1, 0) for q in qa.test)


def test_the_set_is_deterministic_and_the_seed_moves_the_split(shakespeare_text):
    some_plays = shakespeare_text[:800_000]
    first = shakespeare_qa(seed=0, text=some_plays)
    assert shakespeare_qa(seed=0, text=some_plays) == first
    assert {q.group for q in shakespeare_qa(seed=1, text=some_plays).test} != {q.group for q in first.test}


def test_answers_come_from_the_play_the_question_names(shakespeare_text, qa):
    plays = {p.title: p for p in read_plays(shakespeare_text)}
    for q in qa.test:
        title = q.group.split("#")[0]
        play = plays[title]
        if q.kind == "speaker":
            line = q.question.split('"')[1]
            assert any(s == q.answer and line in body for _, s, body in play.speeches)
        elif q.kind == "play":
            assert q.answer == title
        elif q.kind == "next_line":
            line = q.question.split('"')[1]
            assert any(body[k:k + 2] == [line, q.answer] for _, _, body in play.speeches for k in range(len(body)))
        elif q.kind == "character":
            assert any(q.question == f"Who is {n} in {title}?" and q.answer.startswith(d[:1].upper()) for n, d in
                       play.persons)
        else:
            assert is_correct(q, q.answer)


def test_read_plays_finds_the_plays_and_their_persons(shakespeare_text):
    plays = {p.title: p for p in read_plays(shakespeare_text)}
    assert len(plays) >= 30 and "Macbeth" in plays
    assert ("Duncan", "King of Scotland") in plays["Macbeth"].persons
    assert "Macbeth" in {speaker for _, speaker, _ in plays["Macbeth"].speeches}


def test_persons_described_with_the_are_kept_and_continued_entries_are_not(shakespeare_text):
    plays = {p.title: dict(p.persons) for p in read_plays(shakespeare_text)}
    assert plays["The Tempest"]["Prospero"] == "the right Duke of Milan"
    assert plays["A Midsummer Night's Dream"]["Bottom"] == "the Weaver"
    errors = plays["The Comedy of Errors"]
    assert "Dromio of Ephesus" in errors and "Dromio of Syracuse" not in errors  # "the two Antipholuses" continues
    assert "Antipholus of Syracuse" not in errors  # "and Aemelia, but unknown ..." continues the line above


def test_corpus_qa_asks_next_line_and_fill_the_gap_of_any_text(shakespeare_text):
    qa = corpus_qa(shakespeare_text[:300_000], seed=0)
    squeezed = " ".join(shakespeare_text[:300_000].split())  # questions quote lines with their spaces squeezed
    assert set(qa.counts()["test"]) == set(CORPUS_KINDS)
    assert not {q.question for q in qa.train} & {q.question for q in qa.test}
    for q in qa.test:
        if q.kind == "fill_gap":
            assert q.question.split('"')[1].replace("____", q.answer, 1) in squeezed


@given(st.text(max_size=30))
def test_normalise_is_idempotent_and_ignores_case_and_punctuation(text):
    assert normalise(normalise(text)) == normalise(text)
    assert normalise(f"  {text.upper()}!?, ") == normalise(text.upper())


@given(st.integers(0, 500), st.integers(1, 500))
def test_wilson_interval_holds_the_proportion_and_narrows_with_n(k, n):
    k = min(k, n)
    lo, hi = wilson_interval(k, n)
    assert 0 <= lo <= k / n <= hi <= 1
    lo4, hi4 = wilson_interval(4 * k, 4 * n)
    assert hi4 - lo4 <= hi - lo + 1e-12


def test_wilson_interval_matches_the_closed_form():
    lo, hi = wilson_interval(3, 10)
    z, p, n = 1.96, 0.3, 10
    centre, half = (p + z * z / 20) / (1 + z * z / n), z * math.sqrt(p * 0.7 / n + z * z / 400) / (1 + z * z / n)
    assert (lo, hi) == pytest.approx((centre - half, centre + half))


def test_majority_baseline_scores_its_own_share_of_the_training_answers(qa):
    majority = majority_answers(qa.train)
    replies = majority_replies(qa.train, qa.train)
    rows = accuracy_by_kind(qa.train, replies)
    for kind in ("speaker", "play", "character"):
        share = sum(q.gold == majority[kind] for q in qa.train if q.kind == kind)
        assert rows[kind]["correct"] == share


def test_scoring_gold_answers_is_perfect_and_theme_needs_the_word(qa):
    rows = accuracy_by_kind(qa.test, [q.answer for q in qa.test])
    assert rows["all"]["accuracy"] == 1.0
    theme = Question("theme", "Write a line of verse about love, as in X.", "My love is true.", "g", "love")
    assert is_correct(theme, "Love, love!") and not is_correct(theme, "Lovely day.")


def test_few_shot_prompt_shows_solved_examples_of_the_same_kind(qa):
    q = qa.test[0]
    prompt = few_shot_prompt(q, qa.train, shots=3)
    assert prompt.endswith(f"Question: {q.question}\nAnswer:") and prompt.count("Answer:") == 4
    solved = [e for e in qa.train if e.kind == q.kind][:3]
    assert all(f"Question: {e.question}\nAnswer: {e.answer}\n" in prompt for e in solved)
    assert first_line(" Romeo\n\nQuestion: next") == "Romeo"
