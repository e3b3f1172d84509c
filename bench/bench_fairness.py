"""Fair share under a flood: VTC vs FCFS on SmolLM2, measured side by side in one run.

    .venv/bin/python -m bench.bench_fairness [--threads N] [--window 30]

1. TTFT of a light tenant B (one request at a time) alone, then while tenant A keeps 24
   requests in flight, with a batch cap of 32 (the flood fits) and 16 (the flood queues too).
   Target under VTC: B's TTFT p50 during the flood <= 1.2x solo.
2. Service split while both tenants are backlogged (each keeps 24 in flight, batch cap 16):
   weighted service w_in*prompt + w_out*generated tokens per tenant over a window, for equal
   weights and for 2:1 weights. Target under VTC: 1:1 and 2:1 within 10%. FCFS for contrast.
3. Aggregate throughput in (2): VTC should keep >= 98% of FCFS.
"""
from __future__ import annotations

import asyncio
import random
import time

from bench.common import base_args, chat_prompt, greedy, new_engine, p50, setup
from inference.engine.errors import EngineError

W_IN, W_OUT = 1.0, 2.0


class Tenant:
    def __init__(self, engine, tokenizer, name, weight, max_tokens, in_flight):
        self.engine, self.tokenizer, self.name, self.weight = engine, tokenizer, name, weight
        self.max_tokens, self.in_flight = max_tokens, in_flight
        self.window = (float("inf"), float("inf"))
        self.service = 0.0
        self.tokens = 0
        self.ttfts: list[float] = []
        self.count = 0
        self.errors = 0
        self.streams: set = set()

    def _in_window(self) -> bool:
        return self.window[0] <= time.perf_counter() < self.window[1]

    async def one_request(self):
        self.count += 1
        ids = chat_prompt(self.tokenizer, self.count)
        request = greedy(f"{self.name}{self.count}", ids, self.max_tokens, tenant=self.name, weight=self.weight)
        start = time.perf_counter()
        first = True
        stream = self.engine.submit(request)
        self.streams.add(stream)
        try:
            async for event in stream:
                if first and event.tokens:
                    first = False
                    self.ttfts.append(time.perf_counter() - start)
                    if self._in_window():
                        self.service += W_IN * len(ids)
                if self._in_window():
                    self.service += W_OUT * event.tokens
                    self.tokens += event.tokens
        except EngineError:
            self.errors += 1
        finally:
            self.streams.discard(stream)

    def cancel_all(self):
        for stream in list(self.streams):
            stream.cancel()

    async def keep_busy(self, stop: asyncio.Event):
        async def worker():
            while not stop.is_set():
                await self.one_request()
        await asyncio.gather(*(worker() for _ in range(self.in_flight)))


async def light_ttft(engine, tokenizer, flood: bool, requests: int = 8) -> float:
    light = Tenant(engine, tokenizer, "light", 1.0, 16, 1)
    stop = asyncio.Event()
    heavy = Tenant(engine, tokenizer, "heavy", 1.0, 64, 24)
    flood_task = asyncio.create_task(heavy.keep_busy(stop)) if flood else None
    if flood:
        await asyncio.sleep(8)  # let the flood fill the batch and queue
    rng = random.Random(0)
    for _ in range(requests):
        await asyncio.sleep(rng.uniform(0, 0.4))  # arrive at random points of the step in flight
        await light.one_request()
    stop.set()
    if flood_task:
        heavy.cancel_all()
        await flood_task
    return p50(light.ttfts)


async def split(engine, tokenizer, weights, warmup: float, window: float):
    stop = asyncio.Event()
    tenants = [Tenant(engine, tokenizer, f"t{i}", w, 32, 24) for i, w in enumerate(weights)]
    tasks = [asyncio.create_task(t.keep_busy(stop)) for t in tenants]
    start = time.perf_counter() + warmup
    for t in tenants:
        t.window = (start, start + window)
    await asyncio.sleep(warmup + window)
    stop.set()
    for t in tenants:
        t.cancel_all()
    await asyncio.gather(*tasks)
    return tenants


def main():
    parser = base_args(__doc__)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--split-only", action="store_true", help="skip the TTFT part")
    args = parser.parse_args()
    model, tokenizer = setup(args)
    for cap in () if args.split_only else (32, 16):  # 32: the flood fits in the batch; 16: the flood also queues
        for policy in ("vtc", "fcfs"):
            engine = new_engine(model, tokenizer, max_num_seqs=cap, policy=policy)
            try:
                solo = asyncio.run(light_ttft(engine, tokenizer, flood=False))
                flooded = asyncio.run(light_ttft(engine, tokenizer, flood=True))
                print(f"[{policy}, batch cap {cap}] light tenant TTFT p50: solo {solo:.2f}s, during flood "
                      f"{flooded:.2f}s -> {flooded / solo:.2f}x", flush=True)
            finally:
                engine.shutdown()
    for weights in ((1.0, 1.0), (2.0, 1.0)):
        for policy in ("vtc", "fcfs"):
            engine = new_engine(model, tokenizer, max_num_seqs=16, policy=policy, max_queue_wait_s=600)
            try:
                a, b = asyncio.run(split(engine, tokenizer, weights, args.warmup, args.window))
            finally:
                engine.shutdown()
            target = weights[0] / weights[1]
            ratio = a.service / b.service
            print(f"[{policy}] weights {weights[0]:g}:{weights[1]:g}: service {a.service:.0f} vs {b.service:.0f} "
                  f"-> {ratio:.2f} (target {target:g}, off by {abs(ratio / target - 1) * 100:.1f}%); "
                  f"throughput {(a.tokens + b.tokens) / args.window:.1f} tok/s", flush=True)


if __name__ == "__main__":
    main()
