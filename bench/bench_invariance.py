"""Correctness on SmolLM2: our forward vs HF logits, and batch invariance of greedy outputs.

    .venv/bin/python -m bench.bench_invariance [--threads N] [--max-tokens 32]

1. Max |logit difference| between ModelRunner and HF for a chat prompt (prefill in chunks,
   then decode steps).
2. 16 requests (mixed prompts, mixed max_tokens) run concurrently vs each alone, with
   batch_invariant on (default) and off. A divergence is reported with the position and the
   top-2 logit gap there (a near-tie flipped by last-bit GEMM differences).
"""
from __future__ import annotations

import random

import torch

from bench.common import NAMES, base_args, chat_prompt, greedy, setup
from inference.engine.engine import Engine, EngineConfig


def logits_check(model, tokenizer):
    engine = Engine(model, tokenizer, EngineConfig(kv_cache_tokens=2048, max_prefill_tokens_per_step=16))
    ids = chat_prompt(tokenizer, 0)
    captured = []
    forward = engine.runner.forward

    def capture(chunks):
        logits, sampled = forward(chunks)
        if len(logits):
            captured.append(logits[0].clone())
        return logits, sampled
    engine.runner.forward = capture
    out = engine.generate([greedy("x", ids, 8)])[0]
    with torch.inference_mode():
        ref = model(torch.tensor([ids + out.token_ids])).logits[0]
    worst = max((logits - ref[len(ids) - 1 + step]).abs().max().item() for step, logits in enumerate(captured))
    print(f"max |logits - HF logits| over a {len(ids)}-token prefill (chunks of 16) + {len(captured) - 1} decode "
          f"steps: {worst:.2e} (logit scale ~{ref.abs().max().item():.0f})")


def mixed_requests(tokenizer, count, max_tokens):
    rng = random.Random(0)
    requests = []
    for i in range(count):
        text = " ".join(rng.choice(NAMES) for _ in range(rng.randrange(0, 40)))
        messages = [{"role": "user", "content": f"Tell me a short story about a cat named {NAMES[i]}. {text}"}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        requests.append(greedy(f"r{i}", ids, rng.randrange(max_tokens // 2, max_tokens + 1)))
    return requests


def invariance(model, tokenizer, requests, batch_invariant: bool):
    config = EngineConfig(kv_cache_tokens=8192, max_num_seqs=16, batch_invariant=batch_invariant)
    engine = Engine(model, tokenizer, config)
    together = engine.generate(requests)
    same = 0
    for request, batched in zip(requests, together):
        alone = Engine(model, tokenizer, config).generate([request])[0]
        if alone.token_ids == batched.token_ids:
            same += 1
            continue
        pos = next(i for i, (a, b) in enumerate(zip(alone.token_ids, batched.token_ids)) if a != b)
        with torch.inference_mode():
            logits = model(torch.tensor([request.prompt_token_ids + alone.token_ids[:pos]])).logits[0, -1]
        top = torch.topk(logits, 2).values
        print(f"   {request.request_id}: diverges at token {pos}; top-2 logit gap there {float(top[0] - top[1]):.2e}")
    print(f"batch_invariant={batch_invariant}: {same}/{len(requests)} requests identical alone vs 16 concurrent")


def main():
    parser = base_args(__doc__)
    parser.set_defaults(max_tokens=32)
    args = parser.parse_args()
    model, tokenizer = setup(args)
    logits_check(model, tokenizer)
    requests = mixed_requests(tokenizer, 16, args.max_tokens)
    print(f"prompt lengths {sorted(len(r.prompt_token_ids) for r in requests)}")
    for flag in (True, False):
        invariance(model, tokenizer, requests, flag)


if __name__ == "__main__":
    main()
