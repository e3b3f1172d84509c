"""A tiny random Llama + byte-level tokenizer with a ChatML template, saved as a real HF directory.

Built in milliseconds with no downloads, so end-to-end tests run the real loader, engine and HTTP
services on a model whose outputs are deterministic but meaningless.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


_MERGES = ["h e", "l l", "t h", "Ġ t", "e r", "i n", "o n", "a n", "Ġ a", "Ġ c", "a t", "Ġc at", "s t", "o r",
           "e n", "r e", "Ġt h", "Ġth e", "in g", "an d", "Ġ s", "Ġ w", "o u", "e d", "i s", "he ll", "hell o"]


def tiny_tokenizer():
    """Byte-level BPE over all 256 bytes plus a few merges (multi-byte tokens), with an <eos> token:
    the engine tests' tokenizer (stop strings across token boundaries, incremental UTF-8)."""
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


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    alphabet = ByteLevel.alphabet()  # the 256 byte symbols: every byte string is encodable
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for symbol in sorted(alphabet):
        vocab[symbol] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>",
                                   additional_special_tokens=SPECIAL_TOKENS, chat_template=CHAT_TEMPLATE)


def build_tiny_model(*, seed: int = 0, layers: int = 2, context: int = 512, ascii_only: bool = False):
    """ascii_only: the output head can only win on printable ASCII bytes, so greedy decoding never ends
    on EOS and each generated token is exactly one character (fault tests count delivered tokens)."""
    import torch

    tokenizer = build_tokenizer()
    # initializer_range 0.02 (transformers' default): the end-to-end tests' outputs depend on it.
    model = tiny_llama(len(tokenizer), seed, num_hidden_layers=layers, max_position_embeddings=context,
                       rms_norm_eps=1e-5, tie_word_embeddings=not ascii_only, initializer_range=0.02,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)
    if ascii_only:
        printable = {tokenizer.convert_tokens_to_ids(symbol) for symbol in _printable_ascii_symbols()}
        with torch.no_grad():
            for token_id in range(model.config.vocab_size):
                if token_id not in printable:
                    model.lm_head.weight[token_id].zero_()
                else:
                    model.lm_head.weight[token_id].mul_(4.0)  # push their logits clear of the zeroed ones
    return model, tokenizer


def _printable_ascii_symbols() -> list[str]:
    from tokenizers.pre_tokenizers import ByteLevel

    encoded = ByteLevel(add_prefix_space=False).pre_tokenize_str("".join(chr(c) for c in range(33, 127)))
    return list(encoded[0][0])


def save_tiny_model(directory: Path, **kwargs) -> Path:
    model, tokenizer = build_tiny_model(**kwargs)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
