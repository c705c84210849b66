"""Replay in finetuning: rows of base-corpus text mixed into each conversation batch, so the model keeps its
first job. Checked as properties of the batch source over generated conversations and texts."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.finetune import ConversationStream

IGNORE = -1

conversations = st.lists(
    st.lists(st.integers(1, 50), min_size=2, max_size=12).flatmap(
        lambda ids: st.tuples(st.just(ids), st.lists(st.integers(0, 1), min_size=len(ids), max_size=len(ids)))),
    min_size=1, max_size=9)


@settings(max_examples=40, deadline=None)
@given(conversations, st.integers(2, 6), st.integers(0, 5), st.integers(0, 10_000))
def test_replay_rows_are_fully_trained_windows_of_the_base_text(rendered, batch_size, replay_rows, seed):
    base = np.random.default_rng(seed).integers(100, 200, size=300)  # ids a conversation never uses
    stream = ConversationStream(rendered, batch_size, seed, replay=base, replay_rows=replay_rows)
    for _ in range(3):
        x, y = stream.next()
        assert x.shape[0] == batch_size
        replayed = [row for row in range(batch_size) if int(x[row, 0]) >= 100]
        assert len(replayed) == min(replay_rows, batch_size - 1)  # at least one conversation row in every batch
        for row in replayed:
            ids = np.append(x[row].numpy(), y[row, -1].item())
            assert (y[row] != IGNORE).all()  # every token of the base text is trained
            starts = [s for s in range(len(base) - len(ids) + 1) if (base[s:s + len(ids)] == ids).all()]
            assert starts  # a contiguous window of the base text, as long as the batch


@settings(max_examples=20, deadline=None)
@given(conversations, st.integers(2, 6), st.integers(0, 5), st.integers(1, 6))
def test_replaying_stream_resumes_exactly(rendered, batch_size, replay_rows, skip):
    base = np.arange(100, 400)
    a = ConversationStream(rendered, batch_size, seed=7, replay=base, replay_rows=replay_rows)
    b = ConversationStream(rendered, batch_size, seed=7, replay=base, replay_rows=replay_rows)
    for _ in range(skip):
        a.next()
    b.set_state(a.get_state())
    for _ in range(4):
        (xa, ya), (xb, yb) = a.next(), b.next()
        assert xa.equal(xb) and ya.equal(yb)


def test_without_base_text_every_row_is_a_conversation():
    rendered = [([1, 2, 3], [0, 1, 1])] * 5
    x, _ = ConversationStream(rendered, 4, seed=1, replay=None, replay_rows=3).next()
    assert x.tolist() == [[1, 2]] * 4
