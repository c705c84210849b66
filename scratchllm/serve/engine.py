"""The model's work for the workbench: one run's model and tokenizer, sampling token by token, attention, splits.

A `Generation` is generate.py's cached sampling loop (CachedContext + sample_next_token, the same seeded generator,
so temperature 0 or a given seed yields exactly what `scratchllm generate` prints) advanced one token per `step()`,
so the server can stream each token with its top-10 next-token probabilities and stop between tokens when the
client leaves. This module holds no lock and knows no HTTP: app.py serialises calls into it.
"""

from __future__ import annotations

import codecs
import secrets
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from scratchllm.checkpoint import load_model
from scratchllm.config import InputError
from scratchllm.generate import CachedContext, crop_prompt, sample_next_token
from scratchllm.model import causal_mask
from scratchllm.runfolder import TOKENIZER
from scratchllm.serve.schemas import MAX_ATTENTION_TOKENS, AttentionRequest, FieldError, GenerateRequest
from scratchllm.tokenizer import CharTokenizer, WordTokenizer, load_tokenizer

TOP = 10  # alternatives shown per generated token


def _rounded(t: torch.Tensor, digits: int = 5) -> list:
    return torch.round(t.float(), decimals=digits).tolist()


@dataclass
class TokenStep:
    """One sampled token: its id, the text it completes ('' while a character is still incomplete), its own bytes
    as a label, its probability p and the top-10 next-token probabilities it was drawn from (after temperature;
    a sampled token may lie outside the top 10)."""

    id: int
    text: str
    label: str
    p: float
    top: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"id": self.id, "text": self.text, "label": self.label, "p": self.p, "top": self.top}


class Engine:
    """A run's model (eval mode, CPU) and tokenizer, loaded once."""

    def __init__(self, run_dir: Path):
        self.model, tok, _ = load_model(run_dir)
        if tok is None and (run_dir / TOKENIZER).is_file():
            tok = load_tokenizer(run_dir / TOKENIZER)
        if tok is None:
            raise InputError(f"{run_dir} has no tokenizer.json: the workbench needs text, not ids")
        self.tokenizer = tok
        self.model.eval()
        self.tokens_generated = 0  # over the server's life; tests watch it stop when a client leaves

    def label(self, i: int) -> str:
        """A token's own bytes as text; bytes of a cut character are escaped (b'\\xe2'), never half-shown."""
        return self.tokenizer.token_bytes(i).decode("utf-8", errors="backslashreplace")

    def encode(self, text: str, name: str) -> list[int]:
        try:
            return self.tokenizer.encode(text)
        except InputError as e:  # a char tokenizer meeting a character it never saw
            raise FieldError(name, str(e)) from None

    def start(self, req: GenerateRequest) -> Generation:
        if req.top_k is not None and req.top_k > self.model.config.vocab_size:
            raise FieldError("top_k", f"must be <= the vocabulary size {self.model.config.vocab_size}")
        return Generation(self, req)

    @torch.no_grad()
    def attention(self, req: AttentionRequest) -> dict:
        """POST /api/attention: tokens, attention[layer][head][q][k] and one head's Q, K, V, scores and mask."""
        cfg = self.model.config
        if req.layer >= cfg.n_layer:
            raise FieldError("layer", f"must be < {cfg.n_layer} (the model's layers)")
        if req.head >= cfg.n_head:
            raise FieldError("head", f"must be < {cfg.n_head} (heads per layer)")
        all_ids = self.encode(req.text, "text")
        ids = all_ids[:min(cfg.block_size, MAX_ATTENTION_TOKENS)]
        if not ids:
            raise FieldError("text", "encodes to no tokens")
        layers = self.model.inspect(torch.tensor([ids]))
        one = layers[req.layer]
        return {
            "token_ids": ids, "tokens": [self.label(i) for i in ids], "truncated": len(all_ids) > len(ids),
            "attention": _rounded(torch.stack([layer["att"][0] for layer in layers])),  # (L, H, T, T)
            "layer": req.layer, "head": req.head,
            "q": _rounded(one["q"][0, req.head]), "k": _rounded(one["k"][0, req.head]),  # (T, hd)
            "v": _rounded(one["v"][0, req.head]),
            "scores": _rounded(one["scores"][0, req.head]),  # (T, T): QKᵀ/√d before the mask
            "mask": causal_mask(len(ids), len(ids)).tolist(),  # (T, T): True where query i may see key j
        }

    def tokenize(self, text: str) -> dict:
        """POST /api/tokenize: the text split by the run's tokenizer, by characters, by words and into bytes."""
        n_bytes = len(text.encode("utf-8"))
        kind = getattr(self.tokenizer, "type_name", type(self.tokenizer).__name__)
        rows = [(f"this run's {kind}", self.tokenizer.vocab_size, [self.label(i) for i in self.encode(text, "text")])]
        if text:
            chars = CharTokenizer.train(text)
            words = WordTokenizer.train(text, vocab_size=len(text) + 2)  # every word of the text is known
            rows += [("characters", None, [chars.itos[i] for i in chars.encode(text)]),
                     ("words (GPT-4 split)", None, [words.words[i] for i in words.encode(text)])]
        rows.append(("UTF-8 bytes", 256, [f"{b:02x}" for b in text.encode("utf-8")]))
        return {"bytes": n_bytes, "tokenizers": [
            {"name": name, "vocab_size": vocab, "count": len(pieces), "tokens": pieces,
             "bytes_per_token": round(n_bytes / len(pieces), 3) if pieces else None} for name, vocab, pieces in rows]}


class Generation:
    """One request's sampling loop, one token per `step()`; `finish()` flushes a character left incomplete."""

    def __init__(self, engine: Engine, req: GenerateRequest):
        self.engine, self.req = engine, req
        tok = engine.tokenizer
        if req.prompt:
            ids = engine.encode(req.prompt, "prompt")
        elif "<|endoftext|>" in tok.special_tokens:
            ids = [tok.special_tokens["<|endoftext|>"]]
        else:
            raise FieldError("prompt", "is empty and the tokenizer has no <|endoftext|> token to start from")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.ids = crop_prompt(ids, engine.model.config.block_size)
        self.notes = [str(w.message) for w in caught]
        self.seed = req.seed if req.seed is not None else secrets.randbelow(2**31)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.context = CachedContext(engine.model)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stops = set(tok.special_tokens.values())
        self.left = req.max_new_tokens

    @torch.no_grad()  # per call: grad mode is per thread, and each step may run on another worker thread
    def step(self) -> TokenStep | None:
        """Sample the next token, or None when the budget is spent or a stop token came."""
        if self.left <= 0:
            return None
        r = self.req
        logits = self.context.next_logits(self.ids)  # (vocab,)
        token = sample_next_token(logits, r.temperature, r.top_k, r.top_p, self.generator)
        if token in self.stops:
            self.left = 0
            return None
        self.left -= 1
        self.ids.append(token)
        self.engine.tokens_generated += 1
        probs = (logits.float() / (r.temperature or 1.0)).softmax(-1)
        values, order = probs.topk(min(TOP, probs.numel()))
        top = [{"id": int(i), "label": self.engine.label(int(i)), "p": round(float(p), 5)}
               for p, i in zip(values, order, strict=True)]
        text = self.decoder.decode(self.engine.tokenizer.decode_bytes([token]))
        return TokenStep(token, text, self.engine.label(token), round(float(probs[token]), 5), top)

    def finish(self) -> str:
        """Bytes of a character the last token left incomplete, decoded (U+FFFD) as generate.stream_text does."""
        return self.decoder.decode(b"", final=True)
