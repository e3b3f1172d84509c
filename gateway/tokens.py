"""Exact prompt token counts in the gateway, without torch.

The inference service publishes its tokenizer (tokenizer.json), chat template and special tokens at
`GET /v1/tokenizer`; the gateway renders the template the way transformers does (sandboxed jinja,
trim/lstrip blocks) and encodes with the Rust `tokenizers` library, so its counts equal the
service's. Used to reserve `prompt + max_tokens` before forwarding and to fit long histories.
"""

from __future__ import annotations

import json

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class PromptCounter:
    def __init__(self, *, tokenizer_json: str, chat_template: str, special_tokens: dict, context_length: int):
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=["jinja2.ext.loopcontrols"])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        self.template = env.from_string(chat_template)
        self.special_tokens = dict(special_tokens)
        self.context_length = context_length

    @classmethod
    def from_payload(cls, payload: dict) -> "PromptCounter":
        return cls(tokenizer_json=payload["tokenizer_json"], chat_template=payload["chat_template"],
                   special_tokens=payload.get("special_tokens", {}), context_length=payload["context_length"])

    def render_chat(self, messages: list[dict]) -> str:
        return self.template.render(messages=messages, add_generation_prompt=True, **self.special_tokens)

    def chat_tokens(self, messages: list[dict]) -> int:
        return len(self.tokenizer.encode(self.render_chat(messages), add_special_tokens=False).ids)

    def text_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)
