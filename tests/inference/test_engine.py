"""Engine tests on a tiny random Llama: continuous batching, invariance, isolation, sampling,
stop strings, finish reasons, cancellation, preemption, backpressure, async streaming."""
import asyncio
import random

import pytest
import torch

from inference.engine.engine import Engine, EngineConfig
from inference.engine.errors import EngineOverloaded, EngineStopped, InvalidRequest, TenantQueueFull
from inference.engine.sequence import GenerationRequest, SamplingParams
from tests.support.tiny_model import tiny_llama, tiny_tokenizer



@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_llama(len(tokenizer))


def make_engine(model, tokenizer, **overrides):
    config = dict(kv_cache_tokens=8192, max_num_seqs=16, max_prefill_tokens_per_step=48)
    config.update(overrides)
    return Engine(model, tokenizer, EngineConfig(**config))


def prompt(n, seed=0):
    rng = random.Random(seed)
    return [rng.randrange(0, 280) for _ in range(n)]


def req(rid, ids, tenant="t", weight=1.0, **params):
    params.setdefault("temperature", 0.0)
    params.setdefault("ignore_eos", True)
    return GenerationRequest(rid, tenant, weight, ids, SamplingParams(**params))


def mixed_requests(count=16, **params):
    rng = random.Random(7)
    return [req(f"r{i}", prompt(rng.randrange(3, 120), seed=i), max_tokens=rng.randrange(1, 40), **params)
            for i in range(count)]


def test_greedy_matches_hf_generate(model, tokenizer):
    ids = prompt(30)
    out = make_engine(model, tokenizer).generate([req("a", ids, max_tokens=25)])[0]
    with torch.no_grad():
        reference = model.generate(torch.tensor([ids]), max_new_tokens=25, do_sample=False, eos_token_id=None,
                                   pad_token_id=0)
    assert out.token_ids == reference[0, len(ids):].tolist()
    assert out.finish_reason == "length"


def test_batch_invariance_16_mixed_requests(model, tokenizer):
    requests = mixed_requests()
    alone = [make_engine(model, tokenizer).generate([r])[0].token_ids for r in requests]
    engine = make_engine(model, tokenizer)
    together = engine.generate(requests)
    assert [c.token_ids for c in together] == alone
    assert engine.steps < sum(r.params.max_tokens for r in requests)  # really batched


def test_requests_join_and_leave_running_batch(model, tokenizer):
    engine = make_engine(model, tokenizer)
    first = engine.submit_blocking(req("a", prompt(10), max_tokens=30))
    for _ in range(5):
        engine.step()
    second = engine.submit_blocking(req("b", prompt(10, 1), max_tokens=3))
    plan = engine.step()
    assert {c.seq.request.request_id for c in plan.chunks} == {"a", "b"}  # joined at the next step
    while "b" in {s.request.request_id for s in engine.scheduler.running}:
        engine.step()
    assert engine.scheduler.running and len(engine.scheduler.running) == 1  # b left at once, a continues
    assert sum(e.tokens for e in second.drain()) == 3
    while engine.scheduler.running:
        engine.step()
    assert sum(e.tokens for e in first.drain()) == 30
    assert engine.allocator.used_tokens == 0


def test_isolation_after_long_request(model, tokenizer):
    probe = req("probe", prompt(20, 3), max_tokens=20)
    fresh = make_engine(model, tokenizer).generate([probe])[0].token_ids
    engine = make_engine(model, tokenizer, kv_cache_tokens=512)
    engine.generate([req("long", prompt(300, 4), max_tokens=150)])
    assert engine.generate([probe])[0].token_ids == fresh


def test_seeded_sampling_reproducible_and_batch_independent(model, tokenizer):
    params = dict(temperature=0.9, top_p=0.9, top_k=50, seed=1234, max_tokens=30)
    target = req("s", prompt(15), **params)
    alone = make_engine(model, tokenizer).generate([target])[0].token_ids
    crowd = mixed_requests(6, temperature=1.0)
    together = make_engine(model, tokenizer).generate(crowd[:3] + [target] + crowd[3:])[3].token_ids
    assert together == alone
    other_seed = make_engine(model, tokenizer).generate([req("s", prompt(15), **{**params, "seed": 99})])[0]
    assert other_seed.token_ids != alone


def test_top_k_one_is_greedy(model, tokenizer):
    engine = make_engine(model, tokenizer)
    greedy, top1 = engine.generate([req("g", prompt(12), max_tokens=15),
                                    req("k", prompt(12), max_tokens=15, temperature=1.3, top_k=1)])
    assert greedy.token_ids == top1.token_ids


def test_stop_string_across_token_boundary(model, tokenizer):
    engine = make_engine(model, tokenizer)
    base = req("a", tokenizer.encode("hello the cat"), max_tokens=40)
    full = engine.generate([base])[0]
    # A two-character stop string: the last character of one token's text and the first of the next.
    pieces = [tokenizer.decode(full.token_ids[: i + 1]) for i in range(len(full.token_ids))]
    for i in range(3, len(pieces) - 1):
        cut = len(pieces[i])
        stop = full.text[cut - 1: cut + 1]
        if (pieces[i] == full.text[:cut] and len(pieces[i - 1]) == cut - 1 and len(stop) == 2
                and "\ufffd" not in stop and full.text.find(stop) == cut - 1):
            break
    else:
        pytest.fail("no token boundary to test on")
    expected = full.text[: cut - 1]
    stopped = engine.generate([GenerationRequest("b", "t", 1.0, base.prompt_token_ids,
                                                 SamplingParams(max_tokens=40, temperature=0, stop=(stop,),
                                                                ignore_eos=True))])[0]
    assert stopped.finish_reason == "stop"
    assert stopped.text == expected  # nothing of the stop string, partial or whole, was streamed
    assert sum(e.tokens for e in stopped.events) == len(stopped.token_ids) <= len(full.token_ids)
    assert stopped.events[-1].finish_reason == "stop"
    assert all(e.finish_reason is None for e in stopped.events[:-1])


def test_finish_reasons_length_and_eos(model, tokenizer):
    engine = make_engine(model, tokenizer)
    full = engine.generate([req("a", prompt(10), max_tokens=12)])[0]
    assert full.finish_reason == "length" and len(full.token_ids) == 12
    assert sum(e.tokens for e in full.events) == 12
    eos = full.token_ids[5]
    engine.eos_token_ids = frozenset({eos})
    ended = engine.generate([req("b", prompt(10), max_tokens=12, ignore_eos=False)])[0]
    assert ended.finish_reason == "stop"
    assert ended.token_ids == full.token_ids[: full.token_ids.index(eos) + 1]  # EOS counted, not shown
    ignored = engine.generate([req("c", prompt(10), max_tokens=12, ignore_eos=True)])[0]
    assert ignored.finish_reason == "length" and ignored.token_ids == full.token_ids


def test_cancel_frees_cache_at_next_step(model, tokenizer):
    engine = make_engine(model, tokenizer)
    keep = engine.submit_blocking(req("keep", prompt(40), max_tokens=50))
    drop = engine.submit_blocking(req("drop", prompt(60, 1), max_tokens=50))
    for _ in range(6):
        engine.step()
    used_before = engine.allocator.used_tokens
    drop.cancel()
    drop.cancel()  # idempotent
    plan = engine.step()
    assert all(c.seq.request.request_id == "keep" for c in plan.chunks)
    assert engine.allocator.used_tokens < used_before
    assert list(drop) == drop.drain() or True  # stream ended without error
    keep.cancel()
    engine.step()
    assert engine.allocator.used_tokens == 0 and not engine.scheduler.running


def test_preemption_under_small_cache_keeps_greedy_output(model, tokenizer):
    requests = [req(f"p{i}", prompt(40 + 7 * i, 10 + i), max_tokens=60) for i in range(6)]
    alone = [make_engine(model, tokenizer).generate([r])[0].token_ids for r in requests]
    engine = make_engine(model, tokenizer, kv_cache_tokens=256, max_num_seqs=6)
    out = engine.generate(requests)
    assert engine.scheduler.num_preemptions > 0
    assert [c.token_ids for c in out] == alone
    assert engine.allocator.used_tokens == 0


def test_preemption_keeps_seeded_sampling(model, tokenizer):
    params = dict(temperature=1.0, seed=5, max_tokens=60)
    requests = [req(f"p{i}", prompt(40 + 7 * i, 10 + i), **params) for i in range(5)]
    alone = [make_engine(model, tokenizer).generate([r])[0].token_ids for r in requests]
    engine = make_engine(model, tokenizer, kv_cache_tokens=256, max_num_seqs=5)
    assert [c.token_ids for c in engine.generate(requests)] == alone
    assert engine.scheduler.num_preemptions > 0


def test_backpressure_and_invalid_requests(model, tokenizer):
    engine = make_engine(model, tokenizer, max_queue_per_tenant=2, max_queue_total=3)
    engine.submit_blocking(req("1", prompt(5), tenant="a", max_tokens=2))
    engine.submit_blocking(req("2", prompt(5), tenant="a", max_tokens=2))
    with pytest.raises(TenantQueueFull) as full:
        engine.submit_blocking(req("3", prompt(5), tenant="a", max_tokens=2))
    assert full.value.retry_after > 0 and full.value.message
    engine.submit_blocking(req("4", prompt(5), tenant="b", max_tokens=2))
    with pytest.raises(EngineOverloaded) as overloaded:
        engine.submit_blocking(req("5", prompt(5), tenant="c", max_tokens=2))
    assert overloaded.value.retry_after > 0
    with pytest.raises(InvalidRequest):
        engine.submit_blocking(req("6", prompt(5), tenant="d", max_tokens=engine.max_model_len))
    with pytest.raises(InvalidRequest):
        engine.submit_blocking(req("7", [], tenant="d", max_tokens=2))


def test_queue_wait_limit_ends_stream_with_overloaded(model, tokenizer):
    now = [0.0]
    config = EngineConfig(kv_cache_tokens=4096, max_num_seqs=1, max_queue_wait_s=2.0)
    engine = Engine(model, tokenizer, config, clock=lambda: now[0])
    running = engine.submit_blocking(req("run", prompt(5), max_tokens=20))
    queued = engine.submit_blocking(req("wait", prompt(5, 1), max_tokens=20))
    engine.step()
    now[0] = 3.0
    engine.step()
    with pytest.raises(EngineOverloaded):
        list(queued)
    while engine.scheduler.running:
        engine.step()
    assert sum(e.tokens for e in running.drain()) == 20


def test_stats_are_json_serializable(model, tokenizer):
    import json

    engine = make_engine(model, tokenizer)
    engine.generate([req("a", prompt(10), max_tokens=4, tenant="x")])
    stats = json.loads(json.dumps(engine.stats()))
    assert stats["policy"] == "vtc" and stats["kv_cache"]["total_tokens"] == 8192
    assert stats["generated_tokens"] == 4 and "x" in stats["tenants"]


async def test_async_streaming_thread_cancel_and_shutdown(model, tokenizer):
    engine = make_engine(model, tokenizer)
    engine.start()
    try:
        expected = make_engine(model, tokenizer).generate([req("x", prompt(10), max_tokens=20)])[0]

        async def consume(stream):
            return [event async for event in stream]

        streams = [engine.submit(req(f"a{i}", prompt(10), max_tokens=20)) for i in range(4)]
        long = engine.submit(req("long", prompt(10, 2), max_tokens=500))
        results = await asyncio.wait_for(asyncio.gather(*(consume(s) for s in streams)), 30)
        for events in results:
            assert [t for e in events for t in e.token_ids] == expected.token_ids
            assert events[-1].finish_reason == "length"
        first = await asyncio.wait_for(long.__anext__(), 30)
        assert first.tokens >= 1
        long.cancel()
        await asyncio.wait_for(consume(long), 30)  # ends after cancel
        for _ in range(200):
            if engine.allocator.used_tokens == 0:
                break
            await asyncio.sleep(0.01)
        assert engine.allocator.used_tokens == 0
    finally:
        engine.shutdown()
    with pytest.raises(EngineStopped):
        engine.submit(req("late", prompt(5), max_tokens=2))
