"""Throughput and TTFT: the engine vs HF static `model.generate` on the same prompts, side by side.

    .venv/bin/python -m bench.bench_throughput [--threads N] [--streams 1 4 16 32]

Each row: C concurrent chat prompts ("Tell me a short story about a cat named N."), 64 new
tokens each, EOS ignored, greedy. HF gets the C prompts as one left-padded batch; the engine
gets C requests submitted at once through its thread and asyncio streams. HF==engine counts
identical greedy outputs (HF's padded batches differ from unpadded math in the last bits, so
only the 1-stream row is expected to match fully; see bench_invariance for the engine's own check).
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


def main():
    parser = base_args(__doc__)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4, 16, 32])
    args = parser.parse_args()
    model, tokenizer = setup(args)
    n = args.max_tokens
    engine = new_engine(model, tokenizer, max_num_seqs=max(args.streams))
    print(f"{'streams':>7} {'HF s':>6} {'HF tok/s':>9} {'eng s':>6} {'engine tok/s':>12} {'ratio':>6} "
          f"{'TTFT p50':>9} {'TTFT max':>9} {'HF==engine':>10}")
    try:
        for c in args.streams:
            prompts = [chat_prompt(tokenizer, i) for i in range(c)]
            hf_s, hf_out = hf_generate(model, tokenizer, prompts, n)
            seconds, timed = run_concurrent(engine, [greedy(f"r{i}", p, n) for i, p in enumerate(prompts)])
            hf_tps, tps = c * n / hf_s, sum(t.tokens for t in timed) / seconds
            same_hf = sum(t.token_ids == h for t, h in zip(timed, hf_out))
            print(f"{c:>7} {hf_s:>6.1f} {hf_tps:>9.1f} {seconds:>6.1f} {tps:>12.1f} {tps / hf_tps:>5.2f}x "
                  f"{p50(t.ttft for t in timed):>8.2f}s {max(t.ttft for t in timed):>8.2f}s {same_hf:>7}/{c:<2}",
                  flush=True)
            if c == 1:  # the same stream without row padding (batch_invariant=False)
                fast = new_engine(model, tokenizer, max_num_seqs=max(args.streams), batch_invariant=False)
                try:
                    seconds, timed = run_concurrent(fast, [greedy("f0", prompts[0], n)])
                finally:
                    fast.shutdown()
                tps = timed[0].tokens / seconds
                print(f"{'1 (no-pad)':>7} {'':>6} {'':>9} {seconds:>6.1f} {tps:>12.1f} {tps / hf_tps:>5.2f}x "
                      f"{timed[0].ttft:>8.2f}s {timed[0].ttft:>8.2f}s {int(timed[0].token_ids == hf_out[0]):>7}/1",
                      flush=True)
        print("stats:", {k: v for k, v in engine.stats().items() if k != "tenants"})
    finally:
        engine.shutdown()


if __name__ == "__main__":
    main()
