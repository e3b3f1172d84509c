"""Request state only: what was asked (SamplingParams, GenerationRequest), what the stream
receives (StreamEvent) and how far the engine has got (Sequence). No scheduling logic here."""
from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    tenant_id: str
    weight: float
    prompt_token_ids: list[int]
    params: SamplingParams


@dataclass(frozen=True)
class StreamEvent:
    text: str  # safe to show: never a partial stop string nor half a UTF-8 character
    tokens: int  # generated tokens this event accounts for; they sum to the completion tokens
    finish_reason: str | None = None  # "stop" | "length" on the last event
    token_ids: tuple[int, ...] = ()  # the generated ids behind `tokens` (tests, debugging)


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class Sequence:
    """One request inside the engine.

    token_ids holds prompt + generated tokens. num_computed_tokens of them have their K/V in
    this sequence's cache blocks (block_table). After a preemption the cache is dropped and
    num_computed_tokens falls to 0: the engine recomputes the same tokens, in the same chunk
    shapes, without sampling again (see next_chunk)."""

    def __init__(self, seq_id: int, request: GenerationRequest, arrival: float):
        self.seq_id = seq_id
        self.request = request
        self.tenant_id = request.tenant_id
        self.params = request.params
        self.arrival = arrival
        self.token_ids: list[int] = list(request.prompt_token_ids)
        self.num_prompt_tokens = len(self.token_ids)
        self.num_computed_tokens = 0
        self.block_table: list[int] = []
        self.status = Status.WAITING
        self.admitted_at: float | None = None  # first admission; queue wait ends here
        self.prompt_charged = False  # fair-share charge for the prompt happens once
        self.num_preemptions = 0
        self.finish_reason: str | None = None
        self.cancelled = False

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens:]

    @property
    def is_finished(self) -> bool:
        return self.status is Status.FINISHED

    def next_chunk(self, chunk_size: int) -> int:
        """Tokens to feed in the next step. Prompt chunks end on multiples of chunk_size and
        generated tokens go one at a time, whoever else is in the batch: every token is always
        computed in the same shapes, which keeps outputs independent of batch composition and
        of preemption."""
        done = self.num_computed_tokens
        if done < self.num_prompt_tokens:
            return min((done // chunk_size + 1) * chunk_size, self.num_prompt_tokens) - done
        return 1

    def samples_after(self, num_new: int) -> bool:
        """True when feeding num_new tokens reaches the end of known tokens, so a new token is drawn."""
        return self.num_computed_tokens + num_new == len(self.token_ids)
