"""The chat format of a finetuned model as Hugging Face expects it: a Jinja `chat_template` for
`tokenizer.apply_chat_template`, and <|end|> as the end-of-sequence token so that `generate` stops at the end of a turn.

The template renders exactly the text chat.render_conversation encodes, "<|endoftext|><|user|>Who?<|end|>" then
"<|assistant|>Romeo.<|end|>", and `add_generation_prompt` appends the "<|assistant|>" opener, as chat.render_prompt
does. convert sits in chat's layer and may not import it, so both take the turn tokens from tokenizer/chat_tokens.py;
the peer test (tests/test_export_chat.py) holds both renderings to the same ids through transformers. Files: folder.py.
"""

from __future__ import annotations

import json

from scratchllm.tokenizer import Tokenizer
from scratchllm.tokenizer.chat_tokens import BOS, END, ROLE_TOKENS


def jinja_template(tokenizer: Tokenizer) -> str:
    """The Jinja template for this chat tokenizer (its <|endoftext|> opens the text only if it has one).

    Our renderer encodes message text as plain text, so a message holding "<|end|>" cannot close a turn; transformers
    does the same only with apply_chat_template(..., sanitize_control_tokens=True), and without it reads the string
    as the token, as for any HF chat model. Unknown roles and a system turn after the first raise, as in chat.py.
    Example: [{"role": "user", "content": "Who?"}] with add_generation_prompt ->
    "<|endoftext|><|user|>Who?<|end|><|assistant|>".
    """
    bos = BOS if BOS in tokenizer.special_tokens else ""
    return "".join([
        f"{{%- set roles = {json.dumps(ROLE_TOKENS)} -%}}",
        f"{{{{- {json.dumps(bos)} -}}}}",
        "{%- for message in messages -%}",
        "{%- if message['role'] not in roles -%}",
        "{{- raise_exception('a role must be system, user or assistant; got ' ~ message['role']) -}}",
        "{%- elif message['role'] == 'system' and not loop.first -%}",
        "{{- raise_exception('a system turn may only come first') -}}",
        "{%- elif message['content'] is not string -%}",
        "{{- raise_exception('message content must be text') -}}",
        "{%- endif -%}",
        f"{{{{- roles[message['role']] + message['content'] + {json.dumps(END)} -}}}}",
        "{%- endfor -%}",
        f"{{%- if add_generation_prompt -%}}{{{{- {json.dumps(ROLE_TOKENS['assistant'])} -}}}}{{%- endif -%}}",
    ])
