"""Runner tests: our Llama forward matches HF's logits and is bit-for-bit batch invariant."""
import pytest
import torch

from inference.engine.cache import BlockAllocator
from inference.engine.runner import ModelRunner
from inference.engine.scheduler import ScheduledChunk
from inference.engine.sequence import GenerationRequest, SamplingParams, Sequence
from tests.support.tiny_model import tiny_llama



@pytest.fixture(scope="module")
def model():
    return tiny_llama(300, seed=1)


class Harness:
    def __init__(self, model, tokens=4096):
        self.allocator = BlockAllocator(tokens, 16)
        self.runner = ModelRunner(model, self.allocator.num_blocks, 16, 1024)
        self.next_id = 0

    def seq(self, ids):
        self.next_id += 1
        request = GenerationRequest(str(self.next_id), "t", 1.0, list(ids), SamplingParams(max_tokens=64))
        return Sequence(self.next_id, request, 0.0)

    def run(self, work):
        """work: [(seq, num_new_tokens)] → {seq_id: logits row} for chunks that end the known tokens."""
        chunks = []
        for seq, n in work:
            self.allocator.grow(seq, seq.num_computed_tokens + n)
            chunks.append(ScheduledChunk(seq, n, seq.samples_after(n), seq.num_computed_tokens < seq.num_prompt_tokens))
        logits, sampled = self.runner.forward(chunks)
        for seq, n in work:
            seq.num_computed_tokens += n
        return {c.seq.seq_id: logits[i] for i, c in enumerate(sampled)}


def hf_last_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1]


def test_forward_matches_hf_logits_for_prefill_chunks_and_decode(model):
    h = Harness(model)
    ids = list(range(5, 75))
    seq = h.seq(ids)
    h.run([(seq, 32)])
    logits = h.run([(seq, 38)])[seq.seq_id]  # second chunk attends to the cached first one
    torch.testing.assert_close(logits, hf_last_logits(model, ids), atol=1e-4, rtol=1e-4)
    for step in range(5):  # decode: feed a token, compare with HF on the whole sequence
        token = int(logits.argmax())
        seq.token_ids.append(token)
        ids.append(token)
        logits = h.run([(seq, 1)])[seq.seq_id]
        torch.testing.assert_close(logits, hf_last_logits(model, ids), atol=1e-4, rtol=1e-4)


def test_gqa_heads_and_rope_positions_beyond_one_bucket(model):
    h = Harness(model)
    ids = [(7 * i) % 300 for i in range(200)]
    seq = h.seq(ids)
    logits = None
    for start in range(0, 200, 64):
        logits = h.run([(seq, min(64, 200 - start))]).get(seq.seq_id, logits)
    torch.testing.assert_close(logits, hf_last_logits(model, ids), atol=1e-4, rtol=1e-4)


def test_decode_logits_bit_identical_whatever_the_batch(model):
    h = Harness(model)
    target = h.seq(list(range(40)))
    h.run([(target, 40)])
    target.token_ids.append(3)
    alone = h.run([(target, 1)])[target.seq_id].clone()
    target.num_computed_tokens -= 1  # replay the same decode step inside different batches
    for others in ([5, 17, 90], [1] * 11, list(range(20, 140, 6))):
        crowd = [h.seq([(i * 3 + j) % 300 for j in range(n)]) for i, n in enumerate(others)]
        work = [(s, s.num_prompt_tokens) for s in crowd] + [(target, 1)]
        assert torch.equal(h.run(work)[target.seq_id], alone)
        target.num_computed_tokens -= 1
        for s in crowd:
            h.allocator.free(s)


def test_runner_shares_memory_with_hf_weights(model):
    h = Harness(model)
    layer = model.model.layers[0].self_attn
    assert layer.q_proj.weight.data_ptr() == h.runner.layers[0].qkv.data_ptr()
