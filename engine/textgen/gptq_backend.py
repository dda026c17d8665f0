"""The auto-gptq backend: a GPTQ checkpoint loaded by auto-gptq into the transformers backend.

Only the loading differs: `AutoGPTQForCausalLM.from_quantized` builds the model with its quantized
Linear layers, and the plain transformers model inside it goes into `TransformersBackend`, which
renders, counts, batches and streams as for any other model. auto-gptq 0.7.1 imports only with
transformers 4.x, so it lives in its own install profile (`make setup-gptq`, `.venv-gptq`).
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
from pathlib import Path
from typing import Callable, Iterator

from engine.errors import Unavailable
from engine.textgen.models import resolve_text_model
from engine.textgen.transformers_backend import TransformersBackend, _check_loaded, pick_device

log = logging.getLogger(__name__)

NEEDS_SETUP = 'llm.backend = "auto-gptq" needs `make setup-gptq` (then run the bot with .venv-gptq/bin/python)'


def require_auto_gptq() -> None:
    """One clear line, before any model loads, when the package is not installed here."""
    if importlib.util.find_spec("auto_gptq") is None:
        raise Unavailable(NEEDS_SETUP)


def gptq_dtype(dtype: str, device: str):
    """GPTQ kernels compute in float16 on a GPU; on a CPU auto-gptq's torch layer needs float32 or bfloat16."""
    import torch

    if dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    if dtype == "float16" and device == "cpu":
        raise Unavailable('llm.dtype = "float16" does not run auto-gptq on a CPU; use "float32" or "bfloat16"')
    return getattr(torch, dtype)


@contextlib.contextmanager
def _torch_init_kept() -> Iterator[None]:
    """from_quantized replaces torch.nn.init's functions (and a transformers flag) for good; put them back,
    or every model built later in this process would start from uninitialised memory."""
    import torch
    import transformers.modeling_utils as modeling_utils

    init = torch.nn.init
    saved = {name: getattr(init, name) for name in ("kaiming_uniform_", "uniform_", "normal_")}
    flag = getattr(modeling_utils, "_init_weights", None)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(init, name, fn)
        if flag is not None:
            modeling_utils._init_weights = flag


def load_gptq(
    spec: str, *, device: str = "auto", dtype: str = "auto", progress: Callable[[str], None] = log.info,
) -> TransformersBackend:
    """Load a GPTQ folder (or hub id) with auto-gptq; CPU: its plain-torch layer, GPU: its CUDA kernels."""
    source = resolve_text_model(spec)
    if source.gguf_file:
        raise Unavailable(f'{source.gguf_file} is a GGUF file, not a GPTQ checkpoint: use llm.backend = "transformers"')
    require_auto_gptq()
    try:
        from auto_gptq import AutoGPTQForCausalLM
    except Exception as exc:  # installed but broken, e.g. beside transformers 5
        raise Unavailable(f"{NEEDS_SETUP}; here auto_gptq does not import: {type(exc).__name__}: {exc}") from exc
    from transformers import AutoTokenizer

    device = pick_device(device)
    torch_dtype = gptq_dtype(dtype, device)
    folder = source.location
    progress(f"loading GPTQ text model {source.name} with auto-gptq on {device}")
    on_cpu = device == "cpu"
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        counter = AutoTokenizer.from_pretrained(folder)
        with _torch_init_kept():
            wrapped = AutoGPTQForCausalLM.from_quantized(
                folder, device=device, use_safetensors=True, use_triton=False, torch_dtype=torch_dtype,
                # The exllama kernels are CUDA only; on a CPU the plain-torch layer runs.
                disable_exllama=on_cpu, disable_exllamav2=on_cpu,
            )
        # The transformers model inside: auto-gptq's own generate() wraps it in an autocast that
        # would turn a CPU's float32 into bfloat16.
        model = wrapped.model
        _check_loaded(model)
    except Unavailable:
        raise
    except Exception as exc:
        raise Unavailable(f"cannot load GPTQ model {folder}: {type(exc).__name__}: {exc}") from exc
    model.eval()
    return TransformersBackend(model, tokenizer, counter, source.name or Path(folder).name)
