"""Every field the workbench's API accepts, with its type and limits: the contract the tests pin.

Requests are strict (no type coercion, unknown fields refused), so a bad request is answered with a 4xx JSON error
naming the field rather than a guess. Limits that depend on the model (top_k <= vocab, layer < n_layer) are checked
by engine.py, which raises `FieldError` with the same shape.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from scratchllm.config import InputError

MAX_PROMPT_CHARS = 4000
MAX_NEW_TOKENS = 1024
MAX_TEMPERATURE = 10.0
MAX_TEXT_CHARS = 2000
MAX_ATTENTION_TOKENS = 64  # L x H x T x T numbers go to the page; 64 keeps a 12 x 12 model's answer near 4 MB
MAX_BODY_BYTES = 64 * 1024


class FieldError(InputError):
    """A request field whose value the model cannot take; answered as 400 {"error", "field"}."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class GenerateRequest(_Strict):
    prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    """Text to continue; "" starts a fresh document (<|endoftext|>)."""
    max_new_tokens: int = Field(100, ge=1, le=MAX_NEW_TOKENS)
    """Tokens to sample at most (a stop token ends sooner)."""
    temperature: float = Field(0.8, ge=0.0, le=MAX_TEMPERATURE)
    """0 = greedy."""
    top_k: int | None = Field(None, ge=1)
    """Sample among the k likeliest tokens only."""
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    """Nucleus sampling: the smallest set of tokens whose probability reaches p."""
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    """Seed of the sampling generator; the answer says which seed was used when none was given."""


class AttentionRequest(_Strict):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    """Text whose attention to show (its first MAX_ATTENTION_TOKENS tokens, at most block_size)."""
    layer: int = Field(0, ge=0)
    """Layer of the head whose Q, K, V and scores come back."""
    head: int = Field(0, ge=0)
    """That head's index within the layer."""


class TokenizeRequest(_Strict):
    text: str = Field(max_length=MAX_TEXT_CHARS)
    """Text to split with the run's tokenizer, by characters, by words and into bytes."""
