"""Tiny stand-ins for tests (engine and server): a random Llama and a byte-level BPE tokenizer,
both built in milliseconds without downloads."""
from __future__ import annotations

_MERGES = ["h e", "l l", "t h", "Ġ t", "e r", "i n", "o n", "a n", "Ġ a", "Ġ c", "a t", "Ġc at", "s t", "o r",
           "e n", "r e", "Ġt h", "Ġth e", "in g", "an d", "Ġ s", "Ġ w", "o u", "e d", "i s", "he ll", "hell o"]


def tiny_tokenizer():
    """Byte-level BPE (GPT-2 style) over all 256 bytes plus a few merges, with an <eos> token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    merges = [tuple(m.split(" ")) for m in _MERGES]
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(["<eos>"])
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>")


def tiny_llama(vocab_size: int, seed: int = 0, **overrides):
    """A random 2-layer Llama (hidden 64, 4 heads, 2 KV heads) in fp32, eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    params = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                  rope_theta=10000.0, tie_word_embeddings=True, initializer_range=0.2)
    params.update(overrides)
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**params)).eval()
