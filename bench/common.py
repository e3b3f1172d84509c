"""Shared benchmark helpers: model loading, the benchmark prompts, engine driving with timings."""
from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
from dataclasses import dataclass, field

import torch

from bench.model_cache import load_smollm2
from inference.engine.engine import Engine, EngineConfig
from inference.engine.sequence import GenerationRequest, SamplingParams

NAMES = ["Tom", "Luna", "Milo", "Bella", "Oscar", "Cleo", "Simba", "Nala", "Felix", "Lily", "Leo", "Chloe", "Max",
         "Zoe", "Jasper", "Ruby", "Oliver", "Daisy", "Toby", "Rosie", "Charlie", "Molly", "George", "Poppy", "Jack",
         "Willow", "Teddy", "Maisie", "Alfie", "Millie", "Archie", "Sophie", "Finn", "Pixie", "Ziggy", "Mochi"]


def base_args(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    parser.add_argument("--max-tokens", type=int, default=64)
    return parser


def setup(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_smollm2()
    print(f"model: SmolLM2-135M-Instruct fp32, torch {torch.__version__}, threads={torch.get_num_threads()}")
    return model, tokenizer


def chat_prompt(tokenizer, i: int) -> list[int]:
    messages = [{"role": "user", "content": f"Tell me a short story about a cat named {NAMES[i % len(NAMES)]}."}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def greedy(rid: str, ids: list[int], max_tokens: int, tenant: str = "bench", weight: float = 1.0) -> GenerationRequest:
    return GenerationRequest(rid, tenant, weight, ids, SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True))


@dataclass
class Timed:
    submitted: float
    first: float | None = None
    done: float | None = None
    tokens: int = 0
    token_ids: list[int] = field(default_factory=list)

    @property
    def ttft(self) -> float:
        return self.first - self.submitted


async def consume(engine: Engine, request: GenerationRequest) -> Timed:
    timed = Timed(time.perf_counter())
    async for event in engine.submit(request):
        if timed.first is None and event.tokens:
            timed.first = time.perf_counter()
        timed.tokens += event.tokens
        timed.token_ids += event.token_ids
    timed.done = time.perf_counter()
    return timed


def run_concurrent(engine: Engine, requests: list[GenerationRequest]) -> tuple[float, list[Timed]]:
    """Submit all at once through the threaded engine (the server's path); returns (seconds, per request)."""
    async def main():
        start = time.perf_counter()
        results = await asyncio.gather(*(consume(engine, r) for r in requests))
        return time.perf_counter() - start, results
    return asyncio.run(main())


def p50(values) -> float:
    return statistics.median(values)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def new_engine(model, tokenizer, **overrides) -> Engine:
    config = dict(max_num_seqs=32, kv_cache_tokens=8192, max_prefill_tokens_per_step=256)
    config.update(overrides)
    engine = Engine(model, tokenizer, EngineConfig(**config))
    engine.start()
    return engine
