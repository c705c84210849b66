"""A finetuned (chat) run exported with `scratchllm export` against transformers: apply_chat_template gives the ids
chat.py renders, <|end|> is the eos that stops generate, and the model's logits on a chat prompt equal ours."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.chat import render_conversation, render_prompt
from scratchllm.checkpoint import load_model
from scratchllm.cli import main
from scratchllm.config import load_config
from scratchllm.finetune import finetune
from scratchllm.generate import generate
from scratchllm.tokenizer.chat_tokens import ASSISTANT, CHAT_TOKENS, END
from scratchllm.train import train

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.peer
# A thousand float32 roundings (~1.2e-4): the spread of reordered sums over these widths and layers, far below any
# wrong weight or position.
TOL = 1024 * torch.finfo(torch.float32).eps

SPECIAL_STRINGS = (*CHAT_TOKENS, "<|endoftext|>")
PIECES = st.one_of(st.text(max_size=20), st.sampled_from(["<|end", "|>", " ", "\n\n", "<|user|", "Who?"]))


def conversations(content: st.SearchStrategy) -> st.SearchStrategy:
    """An optional system turn, then one to four user/assistant turns in any order (chat.py accepts any)."""
    turn = st.builds(lambda role, text: {"role": role, "content": text}, st.sampled_from(["user", "assistant"]),
                     content)
    system = st.lists(st.builds(lambda text: {"role": "system", "content": text}, content), max_size=1)
    return st.tuples(system, st.lists(turn, min_size=1, max_size=4)).map(lambda p: p[0] + p[1])


def joined(pieces: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(pieces, max_size=3).map("".join)


PLAIN = joined(PIECES).filter(lambda s: not any(t in s for t in SPECIAL_STRINGS))  # near misses, never a token
WITH_TOKENS = joined(st.one_of(PIECES, st.sampled_from(SPECIAL_STRINGS)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_text, one_thread):
    """A tiny base run, finetuned for a few steps on number words, exported through the CLI."""
    folder = tmp_path_factory.mktemp("export_chat")
    corpus, data = folder / "tiny.txt", folder / "qa.jsonl"
    corpus.write_text(tiny_text, encoding="utf-8")
    cfg = load_config("tiny", [f"data.corpus={corpus}", "train.max_steps=10", "train.sample_tokens=4",
                               "model.block_size=64"])
    train(cfg, folder / "base", progress=False)
    rows = [{"instruction": f"Say the number {i} in words.", "output": w}
            for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven"] * 3)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    finetune(folder / "base", str(data), folder / "chat", minutes=1, overrides=["train.max_steps=4",
             "train.batch_size=4", "train.eval_every=100"], eval_questions=1, progress=False)
    assert main(["export", "--run", str(folder / "chat"), "--format", "hf", "--out", str(folder / "hf")]) == 0
    model, tok, _ = load_model(folder / "chat")
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder / "hf").eval()
    return model.eval(), tok, hf, hf_tok


def hf_ids(hf_tok, messages, **kw) -> list[int]:
    return hf_tok.apply_chat_template(messages, return_dict=True, **kw)["input_ids"]


@settings(max_examples=60, deadline=None)
@given(messages=conversations(PLAIN))
def test_apply_chat_template_gives_the_ids_chat_renders(exported, messages):
    _, tok, _, hf_tok = exported
    ids, _ = render_conversation(tok, messages)
    assert hf_ids(hf_tok, messages) == ids
    assert hf_ids(hf_tok, messages, add_generation_prompt=True) == ids + [tok.special_tokens[ASSISTANT]]
    if messages[-1]["role"] != "assistant":
        assert hf_ids(hf_tok, messages, add_generation_prompt=True) == render_prompt(tok, messages)


@settings(max_examples=40, deadline=None)
@given(messages=conversations(WITH_TOKENS))
def test_sanitized_template_encodes_turn_tokens_in_messages_as_text_like_chat(exported, messages):
    _, tok, _, hf_tok = exported
    ids, _ = render_conversation(tok, messages)
    assert hf_ids(hf_tok, messages, sanitize_control_tokens=True) == ids


@pytest.mark.parametrize("messages, error", [
    ([{"role": "user", "content": "Hi"}, {"role": "system", "content": "Be brief."}], "system turn"),
    ([{"role": "narrator", "content": "Enter Romeo."}], "narrator"),
])
def test_template_refuses_what_chat_refuses(exported, messages, error):
    with pytest.raises(Exception, match=error):
        hf_ids(exported[3], messages)


def test_end_of_turn_is_the_eos_everywhere(exported):
    _, tok, hf, hf_tok = exported
    end = tok.special_tokens[END]
    assert hf_tok.eos_token == END and hf_tok.eos_token_id == end and hf_tok.bos_token == "<|endoftext|>"
    assert hf.config.eos_token_id == end and hf.generation_config.eos_token_id == end


def test_hf_logits_and_greedy_reply_equal_ours_on_a_chat_prompt(exported):
    model, tok, hf, hf_tok = exported
    messages = [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Say the number 3."}]
    ids = torch.tensor([hf_ids(hf_tok, messages, add_generation_prompt=True)])
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids)[0], atol=TOL, rtol=TOL)
    new = model.config.block_size - ids.shape[1]
    ours = generate(model, ids, new, temperature=0)
    end = tok.special_tokens[END]
    ours = ours[:ours.index(end) + 1] if end in ours else ours  # generate stops after <|end|>, HF's eos
    out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, do_sample=False)
    assert out[0, ids.shape[1]:].tolist() == ours
