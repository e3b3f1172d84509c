"""KV-cache bookkeeping: a fixed pool of fixed-size blocks, handed to sequences and taken back.

Pure Python so the scheduler can be tested without torch; the runner owns the tensors and
lays them out as `num_blocks` blocks of `block_size` token slots (+1 padding block it keeps to
itself). A sequence's block_table lists its blocks in position order: token t lives in block
block_table[t // block_size], slot t % block_size. Blocks are never shared between sequences;
slots of a reused block that the new owner has not written yet are masked out by attention, so
nothing one sequence computed is ever read for another.
"""
from __future__ import annotations

from .sequence import Sequence


class BlockAllocator:
    def __init__(self, num_tokens: int, block_size: int = 16):
        if num_tokens < block_size:
            raise ValueError("kv cache must hold at least one block")
        self.block_size = block_size
        self.num_blocks = num_tokens // block_size
        # LIFO free list: recently freed blocks are reused first (warm in the CPU caches).
        self._free: list[int] = list(range(self.num_blocks - 1, -1, -1))

    @property
    def num_free_blocks(self) -> int:
        return len(self._free)

    @property
    def capacity_tokens(self) -> int:
        return self.num_blocks * self.block_size

    @property
    def used_tokens(self) -> int:
        return (self.num_blocks - len(self._free)) * self.block_size

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def extra_blocks_needed(self, seq: Sequence, num_tokens: int) -> int:
        """Blocks seq still lacks to hold its first num_tokens tokens."""
        return max(0, self.blocks_for(num_tokens) - len(seq.block_table))

    def can_grow(self, seq: Sequence, num_tokens: int) -> bool:
        return self.extra_blocks_needed(seq, num_tokens) <= len(self._free)

    def grow(self, seq: Sequence, num_tokens: int) -> None:
        """Give seq enough blocks for num_tokens tokens; caller checked can_grow."""
        need = self.extra_blocks_needed(seq, num_tokens)
        if need > len(self._free):
            raise MemoryError("kv cache exhausted")
        for _ in range(need):
            seq.block_table.append(self._free.pop())

    def free(self, seq: Sequence) -> None:
        self._free.extend(reversed(seq.block_table))
        seq.block_table = []
        seq.num_computed_tokens = 0
