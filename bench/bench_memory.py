"""Memory: peak RSS and KV-cache bytes at 32 concurrent streams, and no growth over 500 requests.

    .venv/bin/python -m bench.bench_memory [--threads N] [--requests 500]

RSS is sampled every 20 ms in a side thread. The KV cache is preallocated once, so RSS after
warm-up should stay flat: every finished request gives back its blocks, stream, detokenizer
and random generator.
"""
from __future__ import annotations

import threading

import psutil

from bench.common import base_args, chat_prompt, greedy, new_engine, peak_rss_mib, run_concurrent, setup
from inference.engine.sequence import GenerationRequest, SamplingParams


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


class PeakSampler:
    def __init__(self):
        self.peak = rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mib())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main():
    parser = base_args(__doc__)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    model, tokenizer = setup(args)
    print(f"RSS with model loaded: {rss_mib():.0f} MiB")
    engine = new_engine(model, tokenizer, max_num_seqs=32, kv_cache_tokens=8192)
    print(f"RSS with engine (KV cache preallocated): {rss_mib():.0f} MiB; KV cache {engine.runner.kv_cache_bytes / 2**20:.0f} MiB "
          f"for {engine.allocator.capacity_tokens} tokens "
          f"({engine.runner.kv_cache_bytes / (engine.allocator.capacity_tokens + engine.allocator.block_size):.0f} B/token)")
    try:
        with PeakSampler() as sampler:
            prompts = [chat_prompt(tokenizer, i) for i in range(32)]
            seconds, _ = run_concurrent(engine, [greedy(f"c{i}", p, args.max_tokens) for i, p in enumerate(prompts)])
        used_at_peak = sum(len(p) + args.max_tokens for p in prompts)
        print(f"32 concurrent x {args.max_tokens} tokens: {seconds:.1f}s, peak RSS {sampler.peak:.0f} MiB, "
              f"KV in use at the end of generation ~{used_at_peak} tokens "
              f"({used_at_peak * engine.runner.kv_cache_bytes / (engine.allocator.capacity_tokens + engine.allocator.block_size) / 2**20:.0f} MiB)")
        # Many short requests in waves of 32, half of them sampled with seeds (each owns a generator).
        short = [tokenizer.encode(f"Tell me about cat number {i}.") for i in range(64)]
        samples = []
        done = 0
        while done < args.requests:
            wave = []
            for i in range(done, min(done + 32, args.requests)):
                params = (SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True) if i % 2 else
                          SamplingParams(max_tokens=8, temperature=0.8, top_p=0.9, seed=i, ignore_eos=True))
                wave.append(GenerationRequest(f"m{i}", f"tenant{i % 7}", 1.0, short[i % 64], params))
            run_concurrent(engine, wave)
            done += len(wave)
            samples.append((done, rss_mib()))
        first = next(rss for n, rss in samples if n >= min(100, args.requests))
        print("RSS after requests: " + ", ".join(f"{n}: {rss:.0f}" for n, rss in samples[::3]) + " MiB")
        print(f"growth from request 100 to {args.requests}: {samples[-1][1] - first:+.1f} MiB; "
              f"kv used after: {engine.allocator.used_tokens} tokens; live generators: {len(engine.runner._generators)}; "
              f"tracked requests: {len(engine._active)}; process peak RSS {peak_rss_mib():.0f} MiB")
    finally:
        engine.shutdown()


if __name__ == "__main__":
    main()
