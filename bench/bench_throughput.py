"""Throughput and TTFT: the engine vs HF static `model.generate` on the same prompts, side by side.

    .venv/bin/python -m bench.bench_throughput [--threads N] [--streams 1 4 16 32] [--repeat 2]

Each row: C concurrent chat prompts ("Tell me a short story about a cat named N."), 64 new
tokens each, EOS ignored, greedy. HF gets the C prompts as one left-padded batch; the engine
gets C requests submitted at once through its thread and asyncio streams. HF and engine runs
alternate `--repeat` times and the best of each counts (other processes share the cores).
"1 no-pad" is the engine with batch_invariant=False. HF==engine counts identical outputs.
"""
from __future__ import annotations

import time

import torch

from bench.common import base_args, chat_prompt, greedy, new_engine, p50, run_concurrent, setup


def hf_generate(model, tokenizer, prompts: list[list[int]], max_tokens: int) -> tuple[float, list[list[int]]]:
    width = max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_tokens, min_new_tokens=max_tokens,
                             do_sample=False, pad_token_id=pad)
    return time.perf_counter() - start, [row[width:].tolist() for row in out]


def best_engine_run(engine, requests, previous):
    seconds, timed = run_concurrent(engine, requests)
    return (seconds, timed) if previous is None or seconds < previous[0] else previous


def main():
    parser = base_args(__doc__)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    model, tokenizer = setup(args)
    n = args.max_tokens
    engine = new_engine(model, tokenizer, max_num_seqs=max(args.streams))
    no_pad = new_engine(model, tokenizer, max_num_seqs=max(args.streams), batch_invariant=False)
    print(f"{'streams':>10} {'HF s':>6} {'HF tok/s':>9} {'eng s':>6} {'engine tok/s':>12} {'ratio':>6} "
          f"{'TTFT p50':>9} {'TTFT max':>9} {'HF==engine':>10}")

    def row(label, hf, run, hf_out):
        seconds, timed = run
        hf_tps, tps = len(timed) * n / hf, sum(t.tokens for t in timed) / seconds
        same = sum(t.token_ids == h for t, h in zip(timed, hf_out))
        print(f"{label:>10} {hf:>6.1f} {hf_tps:>9.1f} {seconds:>6.1f} {tps:>12.1f} {tps / hf_tps:>5.2f}x "
              f"{p50(t.ttft for t in timed):>8.2f}s {max(t.ttft for t in timed):>8.2f}s {same:>7}/{len(timed):<2}",
              flush=True)

    try:
        for c in args.streams:
            prompts = [chat_prompt(tokenizer, i) for i in range(c)]
            requests = [greedy(f"r{i}", p, n) for i, p in enumerate(prompts)]
            hf_best, best, best_no_pad = float("inf"), None, None
            for _ in range(args.repeat):
                hf_s, hf_out = hf_generate(model, tokenizer, prompts, n)
                hf_best = min(hf_best, hf_s)
                best = best_engine_run(engine, requests, best)
                if c == 1:
                    best_no_pad = best_engine_run(no_pad, requests, best_no_pad)
            row(str(c), hf_best, best, hf_out)
            if best_no_pad:
                row("1 no-pad", hf_best, best_no_pad, hf_out)
        print("stats:", {k: v for k, v in engine.stats().items() if k != "tenants"})
    finally:
        engine.shutdown()
        no_pad.shutdown()


if __name__ == "__main__":
    main()
