"""`scratchllm chat`: talk to a finetuned run, interactively on a terminal or one answer per line from a pipe.

On a terminal it keeps the conversation (readline history for the input line) and takes /reset, /temperature X
and /quit; from a pipe every input line is a fresh one-question conversation, so scripts get one answer per line.
A base model (no chat tokens) is refused with one line and exit 2. Replies come from assistant.stream_reply.
"""

from __future__ import annotations

import sys

HELP = "/reset forgets the conversation, /temperature X sets the sampling temperature, /quit leaves"


def register(sub) -> None:
    """Add chat to the top-level parser."""
    p = sub.add_parser("chat", help="talk to a finetuned model",
                       description="Chat with a finetuned run; answers stream as they are sampled and stop at <|end|>. "
                                   "Piped stdin: one answer per input line. Example: scratchllm chat --run runs/chat "
                                   "--temperature 0.7  |  echo 'Who is Hamlet?' | scratchllm chat --run runs/chat")
    p.add_argument("--run", required=True, metavar="DIR", help="a finetuned run folder (or a checkpoint folder)")
    p.add_argument("--system", metavar="TEXT", default=None, help="a system turn to open every conversation")
    p.add_argument("--temperature", type=float, default=0.7, metavar="T", help="0 = greedy (default 0.7)")
    p.add_argument("--top-k", type=int, default=None, metavar="K", help="sample among the K likeliest tokens only")
    p.add_argument("--top-p", type=float, default=None, metavar="P", help="nucleus sampling: smallest set with mass P")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="seed for reproducible sampling")
    p.add_argument("--max-new-tokens", type=int, default=256, metavar="N", help="longest reply (default 256)")
    p.set_defaults(func=_chat)


class Session:
    """The model, the sampling settings and the conversation so far."""

    def __init__(self, model, tokenizer, args):
        self.model, self.tokenizer, self.system = model, tokenizer, args.system
        self.sampling = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)
        self.max_new_tokens = args.max_new_tokens
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def answer(self, text: str, out) -> None:
        """Stream the reply to `text` into `out` and keep both turns."""
        from scratchllm.assistant import Reply, stream_reply

        self.messages.append({"role": "user", "content": text})
        reply = Reply()
        for piece in stream_reply(self.model, self.tokenizer, self.messages, reply, self.max_new_tokens,
                                  **self.sampling):
            out.write(piece)
            out.flush()
        out.write("\n")
        out.flush()
        self.messages.append({"role": "assistant", "content": reply.text})

    def command(self, line: str) -> bool:
        """Handle a /command; False means quit."""
        from scratchllm.config import InputError

        name, _, value = line.partition(" ")
        if name == "/quit":
            return False
        if name == "/reset":
            self.reset()
            print("(conversation reset)")
        elif name == "/temperature":
            try:
                temperature = float(value)
                if temperature < 0:
                    raise ValueError
            except ValueError:
                raise InputError(f"/temperature needs a number >= 0; got {value!r}") from None
            self.sampling["temperature"] = temperature
            print(f"(temperature {temperature})")
        else:
            print(f"(unknown command {name}: {HELP})")
        return True


def _interactive(session: Session) -> None:
    from scratchllm.config import InputError

    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    print(f"Chatting with {session.model.num_params() / 1e6:.2f}M parameters. {HELP}.")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            print()
            return
        if not line:
            continue
        if line.startswith("/"):
            try:
                if not session.command(line):
                    return
            except InputError as e:
                print(f"({e})")
            continue
        sys.stdout.write("model> ")
        session.answer(line, sys.stdout)


def _chat(args) -> int:
    from scratchllm.assistant import check_chat_model
    from scratchllm.checkpoint import load_model

    model, tokenizer, _ = load_model(args.run)
    check_chat_model(model, tokenizer)
    session = Session(model, tokenizer, args)
    if sys.stdin.isatty():
        _interactive(session)
        return 0
    for line in sys.stdin:
        if line.strip():
            session.reset()
            session.answer(line.strip(), sys.stdout)
    return 0
