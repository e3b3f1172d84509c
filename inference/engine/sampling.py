"""Sampling parameters: validation and per-request random seeds (the tensor work is in runner.py).

Each request that samples gets its own torch.Generator seeded here, and draws exactly one
random sample per generated token from its own logits row. Its output therefore depends only
on its seed and its own tokens, never on which other requests share the batch.
"""
from __future__ import annotations

import secrets

from .errors import InvalidRequest
from .sequence import SamplingParams

GREEDY_BELOW = 1e-5  # temperatures this small are treated as greedy (argmax)
MAX_STOP_STRINGS = 16
MAX_STOP_LENGTH = 256


def is_greedy(params: SamplingParams) -> bool:
    return params.temperature < GREEDY_BELOW


def request_seed(params: SamplingParams) -> int:
    """The seed a request samples with: its own, or a fresh random one."""
    return params.seed if params.seed is not None else secrets.randbits(63)


def validate(params: SamplingParams) -> None:
    if params.max_tokens < 1:
        raise InvalidRequest("max_tokens must be at least 1")
    if params.temperature < 0:
        raise InvalidRequest("temperature must be >= 0")
    if not 0 < params.top_p <= 1:
        raise InvalidRequest("top_p must be in (0, 1]")
    if params.top_k < 0:
        raise InvalidRequest("top_k must be >= 0")
    if len(params.stop) > MAX_STOP_STRINGS:
        raise InvalidRequest(f"at most {MAX_STOP_STRINGS} stop strings")
    if any(not s or len(s) > MAX_STOP_LENGTH for s in params.stop):
        raise InvalidRequest(f"stop strings must be 1..{MAX_STOP_LENGTH} characters")
