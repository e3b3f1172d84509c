"""The only torch code: a Llama forward over a HF model's weights with a paged KV cache, and sampling.

nano-vllm style: all tokens of a step (decode tokens and prompt chunks of many sequences) go
through each linear layer as one packed [tokens, hidden] matrix; attention runs per decode
bucket (sequences whose padded lengths match) and per prompt chunk against the KV cache;
lm_head runs only on rows that sample.

Batch invariance: a sequence's logits must not depend on who shares its step. (1) Rows of a
packed GEMM are bit-identical whatever the row count M, except for a few small M where the
BLAS picks other kernels; those are found at start-up (_safe_row_counts) and the packed batch
is padded past them (EngineConfig.batch_invariant). (2) Attention for a token is always
computed in the same shapes: decode
lengths are padded to ATTN_BUCKET multiples with masked slots (masked scores contribute exact
zeros), prompt chunks end on fixed positions (Sequence.next_chunk). (3) Sampling draws from
each request's own generator. Elementwise ops and row reductions are per-row anyway.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .sampling import is_greedy, request_seed
from .scheduler import ScheduledChunk

ATTN_BUCKET = 32  # decode keys are padded to a multiple of this (must be a multiple of block_size)


@dataclass
class _Layer:
    input_norm: torch.Tensor
    qkv: torch.Tensor  # [q; k; v] rows fused: one GEMM instead of three
    o: torch.Tensor
    post_norm: torch.Tensor
    gate_up: torch.Tensor  # [gate; up] fused
    down: torch.Tensor


def _fuse(module_weights: list[torch.nn.Parameter]) -> torch.Tensor:
    """Concatenate weights and re-point the HF parameters at views of the result, so the HF
    model keeps working (reference checks) without holding a second copy."""
    fused = torch.cat([w.data for w in module_weights])
    start = 0
    for w in module_weights:
        w.data = fused[start:start + w.shape[0]]
        start += w.shape[0]
    return fused


class ModelRunner:
    def __init__(self, model, num_blocks: int, block_size: int, max_model_len: int, device: str = "cpu",
                 batch_invariant: bool = True):
        cfg = model.config
        if cfg.model_type != "llama" or getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
            raise ValueError("ModelRunner supports bias-free Llama models")
        if ATTN_BUCKET % block_size:
            raise ValueError("block_size must divide ATTN_BUCKET")
        self.device = torch.device(device)
        model.to(self.device).eval()
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = cfg.num_key_value_heads
        self.group = self.num_heads // self.num_kv_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.num_heads
        self.eps = cfg.rms_norm_eps
        self.vocab_size = cfg.vocab_size
        self.block_size = block_size
        self.pad_block = num_blocks  # one extra block: padding reads and padding-row writes land here
        with torch.no_grad():
            self.layers = [
                _Layer(layer.input_layernorm.weight,
                       _fuse([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]),
                       attn.o_proj.weight, layer.post_attention_layernorm.weight,
                       _fuse([layer.mlp.gate_proj.weight, layer.mlp.up_proj.weight]), layer.mlp.down_proj.weight)
                for layer, attn in ((layer, layer.self_attn) for layer in model.model.layers)
            ]
        self.embed = model.model.embed_tokens.weight
        self.final_norm = model.model.norm.weight
        self.lm_head = model.lm_head.weight
        self.dtype = self.embed.dtype
        rotary = model.model.rotary_emb  # HF's own inv_freq and scaling, so any rope variant matches
        positions = torch.arange(max_model_len, device=self.device, dtype=torch.float32)
        freqs = torch.outer(positions, rotary.inv_freq.to(self.device, torch.float32))
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos = (emb.cos() * rotary.attention_scaling).to(self.dtype)
        self.sin = (emb.sin() * rotary.attention_scaling).to(self.dtype)
        self.scale = self.head_dim ** -0.5
        num_slots = (num_blocks + 1) * block_size
        # [layer, k/v, kv_head, slot, head_dim]: a gather along slots yields [kv_head, tokens, dim]
        # directly in the layout the attention matmuls want.
        self.kv_cache = torch.zeros(len(self.layers), 2, self.num_kv_heads, num_slots, self.head_dim,
                                    dtype=self.dtype, device=self.device)
        self._generators: dict[int, torch.Generator] = {}
        # Padding costs most when few rows run (1 row: ~1.7x slower decode on a 2-core CPU), so it can be
        # switched off where bitwise batch invariance matters less than single-stream speed.
        self._row_pad = self._safe_row_counts() if batch_invariant else []

    @property
    def kv_cache_bytes(self) -> int:
        return self.kv_cache.numel() * self.kv_cache.element_size()

    # -- batch layout -------------------------------------------------------------------------

    def _safe_row_counts(self, probe: int = 64) -> list[int]:
        """row_pad[m] = the smallest m' >= m whose GEMM rows equal those of a large GEMM."""
        if self.device.type != "cpu":
            return list(range(probe + 1))  # no probe on accelerators: see module docstring
        gen = torch.Generator().manual_seed(0)
        probes = [(torch.randn(probe, w.shape[1], generator=gen, dtype=self.dtype), w)
                  for w in (self.layers[0].qkv, self.layers[0].down)]
        safe = [m for m in range(1, probe + 1)
                if all(torch.equal(F.linear(x[:m], w), F.linear(x, w)[:m]) for x, w in probes)]
        return [next((s for s in safe if s >= m), m) for m in range(probe + 1)]

    def _padded_rows(self, rows: int) -> int:
        return self._row_pad[rows] if rows < len(self._row_pad) else rows

    def _slots(self, seq, start: int, end: int) -> list[int]:
        bs, table = self.block_size, seq.block_table
        return [table[p // bs] * bs + p % bs for p in range(start, end)]

    def _prepare(self, chunks: list[ScheduledChunk]):
        """Order rows as decode buckets then prompt chunks, and build every index the layers share."""
        decodes = sorted((c for c in chunks if c.num_new_tokens == 1), key=lambda c: c.seq.num_computed_tokens)
        prompts = [c for c in chunks if c.num_new_tokens > 1]
        ids, positions, write_slots, sample_rows = [], [], [], []
        buckets: dict[int, list] = {}  # padded length -> [(seq, context length)]
        for c in decodes:
            pos = c.seq.num_computed_tokens
            if c.sample:
                sample_rows.append(len(ids))
            ids.append(c.seq.token_ids[pos])
            positions.append(pos)
            write_slots.extend(self._slots(c.seq, pos, pos + 1))
            buckets.setdefault(-(-(pos + 1) // ATTN_BUCKET) * ATTN_BUCKET, []).append((c.seq, pos + 1))
        dev = self.device
        decode_groups, row = [], 0
        for padded, members in buckets.items():
            pad_slots = [self.pad_block * self.block_size] * padded
            gather = [(self._slots(seq, 0, length) + pad_slots)[:padded] for seq, length in members]
            lengths = torch.tensor([length for _, length in members], device=dev)
            masked = torch.arange(padded, device=dev)[None, :] >= lengths[:, None]  # [G, padded]
            gather_slots = torch.tensor(gather, device=dev).flatten()
            decode_groups.append((row, len(members), padded, gather_slots, masked[:, None, :]))
            row += len(members)
        prompt_chunks = []
        for c in prompts:
            start, n = c.seq.num_computed_tokens, c.num_new_tokens
            ids.extend(c.seq.token_ids[start:start + n])
            positions.extend(range(start, start + n))
            write_slots.extend(self._slots(c.seq, start, start + n))
            query_pos = torch.arange(start, start + n, device=dev).repeat_interleave(self.group)
            masked = torch.arange(start + n, device=dev)[None, :] > query_pos[:, None]  # causal, [n*group, L]
            prompt_chunks.append((row, n, torch.tensor(self._slots(c.seq, 0, start + n), device=dev), masked))
            row += n
            if c.sample:
                sample_rows.append(row - 1)
        padding = self._padded_rows(len(ids)) - len(ids)
        ids += [0] * padding
        positions += [0] * padding
        write_slots += [self.pad_block * self.block_size] * padding
        sampled = [c for c in decodes + prompts if c.sample]
        return (torch.tensor(ids, device=dev), torch.tensor(positions, device=dev),
                torch.tensor(write_slots, device=dev), decode_groups, prompt_chunks, torch.tensor(sample_rows, dtype=torch.long, device=dev), sampled)

    # -- forward ------------------------------------------------------------------------------

    def _rms_norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        x32 = x.float()  # as HF LlamaRMSNorm: statistics in fp32 (a no-op for fp32 models)
        return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)

    @torch.inference_mode()
    def forward(self, chunks: list[ScheduledChunk]) -> tuple[torch.Tensor, list[ScheduledChunk]]:
        """Runs one step; returns logits [sampling chunks, vocab] and those chunks in row order."""
        ids, positions, write_slots, decode_groups, prompt_chunks, sample_rows, sampled = self._prepare(chunks)
        nh, kvh, g, d = self.num_heads, self.num_kv_heads, self.group, self.head_dim
        cos, sin = self.cos[positions][:, None, :], self.sin[positions][:, None, :]
        h = self.embed[ids]
        attn = torch.zeros(len(ids), nh * d, dtype=self.dtype, device=self.device)
        for i, layer in enumerate(self.layers):
            qkv = F.linear(self._rms_norm(h, layer.input_norm), layer.qkv)
            qk = qkv[:, :(nh + kvh) * d].view(-1, nh + kvh, d)
            qk = qk * cos + torch.cat((-qk[..., d // 2:], qk[..., :d // 2]), dim=-1) * sin  # RoPE
            q = qk[:, :nh] * self.scale
            k_cache, v_cache = self.kv_cache[i, 0], self.kv_cache[i, 1]
            k_cache.index_copy_(1, write_slots, qk[:, nh:].transpose(0, 1))
            v_cache.index_copy_(1, write_slots, qkv[:, (nh + kvh) * d:].view(-1, kvh, d).transpose(0, 1))
            for row, count, padded, gather, masked in decode_groups:
                qg = q[row:row + count].view(count, kvh, g, d).transpose(0, 1).contiguous()  # [kvh, G, g, d]
                kg = k_cache.index_select(1, gather).view(kvh, count, padded, d)
                vg = v_cache.index_select(1, gather).view(kvh, count, padded, d)
                scores = torch.matmul(qg, kg.transpose(-1, -2)).masked_fill_(masked, float("-inf"))
                out = torch.matmul(torch.softmax(scores, -1, dtype=torch.float32).to(self.dtype), vg)  # [kvh, G, g, d]
                attn[row:row + count] = out.transpose(0, 1).reshape(count, nh * d)
            for row, n, gather, masked in prompt_chunks:
                qp = q[row:row + n].view(n, kvh, g, d).transpose(0, 1).reshape(kvh, n * g, d)
                keys = k_cache.index_select(1, gather)
                scores = torch.matmul(qp, keys.transpose(-1, -2)).masked_fill_(masked, float("-inf"))
                probs = torch.softmax(scores, -1, dtype=torch.float32).to(self.dtype)
                out = torch.matmul(probs, v_cache.index_select(1, gather))  # [kvh, n*g, d]
                attn[row:row + n] = out.view(kvh, n, g, d).transpose(0, 1).reshape(n, nh * d)
            h = h + F.linear(attn, layer.o)
            gate, up = F.linear(self._rms_norm(h, layer.post_norm), layer.gate_up).chunk(2, dim=-1)
            h = h + F.linear(F.silu(gate) * up, layer.down)
        last = self._rms_norm(h[sample_rows], self.final_norm)
        rows = last.shape[0]
        if rows:  # pad like the layers so lm_head rows are batch invariant too
            last = torch.cat([last, last.new_zeros(self._padded_rows(rows) - rows, last.shape[1])])
        return F.linear(last, self.lm_head)[:rows], sampled

    # -- sampling -----------------------------------------------------------------------------

    @torch.inference_mode()
    def sample(self, logits: torch.Tensor, chunks: list[ScheduledChunk]) -> list[int]:
        """One token per logits row: argmax for greedy requests, else a draw from the request's own generator."""
        tokens = logits.argmax(dim=-1).tolist()
        for row, chunk in enumerate(chunks):
            params = chunk.seq.params
            if is_greedy(params):
                continue
            gen = self._generators.get(chunk.seq.seq_id)
            if gen is None:
                gen = torch.Generator(self.device).manual_seed(request_seed(params))
                self._generators[chunk.seq.seq_id] = gen
            tokens[row] = self._draw(logits[row].float(), params, gen)
        return tokens

    @staticmethod
    def _draw(logits: torch.Tensor, params, gen: torch.Generator) -> int:
        logits = logits / params.temperature
        candidates = None  # vocabulary ids of `logits` when filtered
        if 0 < params.top_k < logits.shape[0]:
            logits, candidates = torch.topk(logits, params.top_k)  # sorted descending
        if params.top_p < 1.0:
            if candidates is None:
                logits, candidates = torch.sort(logits, descending=True)
            cumulative = torch.softmax(logits, dim=-1).cumsum(dim=-1)
            keep = int((cumulative < params.top_p).sum()) + 1  # smallest prefix with mass >= top_p
            logits, candidates = logits[:keep], candidates[:keep]
        choice = int(torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=gen))
        return choice if candidates is None else int(candidates[choice])

    def release(self, seq_id: int) -> None:
        self._generators.pop(seq_id, None)
