"""KV block allocator: capacity, growth, freeing, no sharing."""
import pytest

from inference.engine.cache import BlockAllocator
from inference.engine.sequence import GenerationRequest, SamplingParams, Sequence


def seq(i, n=10):
    return Sequence(i, GenerationRequest(str(i), "t", 1.0, [1] * n, SamplingParams(max_tokens=4)), 0.0)


def test_grow_allocates_whole_blocks_and_free_returns_them():
    alloc = BlockAllocator(100, block_size=16)  # rounds down to 6 blocks
    assert alloc.num_blocks == 6 and alloc.capacity_tokens == 96
    a = seq(1)
    alloc.grow(a, 17)
    assert len(a.block_table) == 2 and alloc.used_tokens == 32
    alloc.grow(a, 32)
    assert len(a.block_table) == 2  # still fits
    a.num_computed_tokens = 30
    alloc.free(a)
    assert alloc.used_tokens == 0 and a.block_table == [] and a.num_computed_tokens == 0


def test_blocks_are_never_shared_and_exhaustion_is_reported():
    alloc = BlockAllocator(64, block_size=16)
    a, b = seq(1), seq(2)
    alloc.grow(a, 32)
    alloc.grow(b, 32)
    assert not set(a.block_table) & set(b.block_table)
    assert not alloc.can_grow(a, 33)
    with pytest.raises(MemoryError):
        alloc.grow(a, 33)
    alloc.free(b)
    assert alloc.can_grow(a, 64)


def test_rejects_budget_below_one_block():
    with pytest.raises(ValueError):
        BlockAllocator(8, block_size=16)
