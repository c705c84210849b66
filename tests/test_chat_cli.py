"""`scratchllm chat` and assistant.py: replies stop at <|end|>, a leaked turn token is caught, piped stdin gets one
answer per line equal to the library's reply, a base model is refused in one line, and the QA evaluation adds up."""

from __future__ import annotations

import io

import pytest
import torch

from scratchllm.assistant import chat_reply, evaluate_qa, fit_prompt
from scratchllm.chat import add_chat_tokens, render_prompt
from scratchllm.checkpoint import save_model
from scratchllm.cli import main
from scratchllm.model import GPT, GPTConfig
from scratchllm.qa import Question
from scratchllm.tokenizer import train_bpe
from scratchllm.tokenizer.chat_tokens import END, USER

ASK = [{"role": "user", "content": "Who is Hamlet?"}]


@pytest.fixture(scope="module")
def base_tok(shakespeare_text):
    return train_bpe(shakespeare_text[:20_000], 300, progress=False)


@pytest.fixture(scope="module")
def tok(base_tok):
    return add_chat_tokens(base_tok)


def tiny_gpt(vocab_size: int, favourite: int | None = None) -> GPT:
    """A random tiny GPT; with `favourite`, one whose every next-token logit is largest for that id."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16, bias=True,
                          tie_weights=favourite is None))
    if favourite is not None:
        with torch.no_grad():
            model.transformer.ln_f.weight.zero_()  # the final hidden state is ln_f's bias, whatever the input
            model.transformer.ln_f.bias.fill_(1.0)
            model.lm_head.weight.zero_()
            model.lm_head.weight[favourite] = 1.0
    return model


def test_reply_stops_at_the_end_token(tok):
    reply = chat_reply(tiny_gpt(tok.vocab_size, tok.special_tokens[END]), tok, ASK, temperature=0)
    assert reply.ended and not reply.leaked and reply.text == "" and reply.tokens == []


def test_a_turn_token_written_by_the_model_is_leakage(tok):
    reply = chat_reply(tiny_gpt(tok.vocab_size, tok.special_tokens[USER]), tok, ASK, temperature=0)
    assert reply.leaked and not reply.ended


def test_a_reply_cut_by_the_token_limit_did_not_end(tok):
    letter = tok.encode("e")[0]
    reply = chat_reply(tiny_gpt(tok.vocab_size, letter), tok, ASK, temperature=0, max_new_tokens=7)
    assert reply.text == "e" * 7 and not reply.ended and len(reply.tokens) == 7


def test_fit_prompt_drops_the_oldest_turns_but_keeps_the_system_turn(tok):
    system = {"role": "system", "content": "Answer briefly."}
    history = [{"role": r, "content": f"turn {i} " * 5} for i, r in enumerate(["user", "assistant"] * 4)]
    messages = [system, *history, *ASK]
    ids = fit_prompt(tok, messages, 60)
    assert len(ids) <= 60
    kept = next(k for k in range(len(history) + 1) if render_prompt(tok, [system, *history[k:], *ASK]) == ids)
    assert kept > 0 and len(render_prompt(tok, [system, *history[kept - 1:], *ASK])) > 60


def test_chat_answers_each_piped_line_as_the_library_does(tmp_path, tok, monkeypatch, capsys):
    model = tiny_gpt(tok.vocab_size)
    save_model(tmp_path / "run" / "checkpoints" / "latest", model, tok)
    questions = ["Who is Hamlet?", "", "What comes next?"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(questions) + "\n"))
    args = ["chat", "--run", str(tmp_path / "run"), "--temperature", "0", "--max-new-tokens", "12",
            "--system", "Be brief."]
    assert main(args) == 0
    expected = "".join(chat_reply(model, tok, [{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": q}], temperature=0,
                                  max_new_tokens=12).text + "\n" for q in questions if q)
    assert capsys.readouterr().out == expected


def test_chat_refuses_a_base_model_in_one_line(tmp_path, base_tok, monkeypatch, capsys):
    save_model(tmp_path / "base", tiny_gpt(base_tok.vocab_size), base_tok)
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n"))
    assert main(["chat", "--run", str(tmp_path / "base")]) == 2
    err = capsys.readouterr().err
    assert "no chat tokens" in err and err.count("\n") == 1


def test_evaluate_qa_rows_add_up(tok, base_tok):
    train = [Question("speaker", f"Who says line {i}?", "Romeo" if i % 3 else "Juliet", f"g{i}") for i in range(9)]
    test = [Question("speaker", "Who says this?", "Romeo", "t0"), Question("play", "Which play?", "Macbeth", "t1")]
    report = evaluate_qa(test, train, finetuned=(tiny_gpt(tok.vocab_size, tok.special_tokens[END]), tok),
                         base=(tiny_gpt(base_tok.vocab_size), base_tok), max_new_tokens=4, examples=1)
    assert report["questions"] == 2 and report["end_rate"] == 1.0 and report["leak_rate"] == 0.0
    base_accuracy = report["by_type"]["base"]["all"]["accuracy"]
    assert report["accuracy"] == {"majority": 0.5, "finetuned": 0.0, "base": base_accuracy}
    assert report["by_type"]["majority"]["speaker"]["correct"] == 1
    assert [e["kind"] for e in report["examples"]] == ["speaker", "play"]
    assert report["examples"][0] == {"kind": "speaker", "question": "Who says this?", "gold": "Romeo",
                                     "majority": "romeo", "finetuned": "", "base": report["examples"][0]["base"]}


def test_session_commands_reset_set_temperature_and_quit(tok, capsys):
    from argparse import Namespace

    from scratchllm.cli.chat_cmd import Session
    from scratchllm.config import InputError

    args = Namespace(system="Be brief.", temperature=0.0, top_k=None, top_p=None, seed=0, max_new_tokens=4)
    session = Session(tiny_gpt(tok.vocab_size), tok, args)
    session.answer("Who is Hamlet?", io.StringIO())
    assert [m["role"] for m in session.messages] == ["system", "user", "assistant"]
    assert session.command("/reset") and session.messages == [{"role": "system", "content": "Be brief."}]
    assert session.command("/temperature 0.5") and session.sampling["temperature"] == 0.5
    with pytest.raises(InputError):
        session.command("/temperature hot")
    assert session.command("/what") and "/reset" in capsys.readouterr().out
    assert session.command("/quit") is False
