"""Prompt construction: chat templates come from the tokenizer, never hand-written here."""

from __future__ import annotations


class PromptBuilder:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def chat_prompt_ids(self, messages: list[dict]) -> list[int]:
        encoded = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        # transformers 5 returns a BatchEncoding; older releases a plain list.
        ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
        return list(ids)

    def completion_prompt_ids(self, prompt: str) -> list[int]:
        return list(self.tokenizer.encode(prompt, add_special_tokens=False))
