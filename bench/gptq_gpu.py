"""GPTQ on a GPU: what the CPU tests cannot show (CUDA kernels, float16, the speed of a real model).

Loads a GPTQ checkpoint on CUDA in float16 through the engine's own loaders, checks the kernels'
logits against the float weights the checkpoint encodes (on a tiny checkpoint written here, as the
CPU tests do), then measures greedy decoding: tokens/s for one request and for a batch, and the time
to the first streamed token. Exits with one line on a machine without CUDA.

  --loader auto-gptq      engine/textgen/gptq_backend.py (llm.backend = "auto-gptq"; needs auto-gptq built
                          with its CUDA kernels: a CUDA torch, then BUILD_CUDA_EXT=1 pip install auto-gptq==0.7.1)
  --loader transformers   transformers 5 + gptqmodel + optimum (llm.backend = "transformers" with a GPTQ folder)
  MODEL                   a local GPTQ folder, e.g. a 13B chat model (TheBloke/Llama-2-13B-chat-GPTQ);
                          without it only the tiny checkpoint runs.

Usage: python bench/gptq_gpu.py [--loader auto-gptq|transformers] [MODEL] [--tokens 128] [--batch 4]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import bench_logging, emit, log, use_paths

use_paths(tests=True)  # tinymodels, by module name


def load(loader: str, folder: str):
    if loader == "auto-gptq":
        from engine.textgen.gptq_backend import load_gptq

        return load_gptq(folder, device="cuda", dtype="float16")
    from engine.textgen.transformers_backend import TransformersBackend

    return TransformersBackend.from_folder(folder, device="cuda", dtype="float16")


def kernels(model) -> list[str]:
    return sorted({type(m).__name__ for m in model.modules() if hasattr(m, "qweight")})


def tiny_check(loader: str) -> dict:
    """The GPU kernels decode the tiny checkpoint's weights: logits against the float model on CUDA."""
    import torch

    import tinymodels
    from engine.textgen.transformers_backend import TransformersBackend

    with tempfile.TemporaryDirectory() as tmp:
        gptq_dir, float_dir = tinymodels.tiny_gptq_llama(tmp)
        reference = TransformersBackend.from_folder(str(float_dir), device="cuda", dtype="float32")
        backend = load(loader, str(gptq_dir))
        texts = ["the party walks into the old tavern where a bard", "the dragon sleeps"]
        enc = backend.tokenizer(texts, return_tensors="pt", padding=True, return_token_type_ids=False).to("cuda")
        with torch.inference_mode():
            got = backend.model(**enc).logits.float()
            want = reference.model(**enc).logits.float()
        mask = enc["attention_mask"].bool()
        error = (got - want).abs()[mask].max().item()
        scale = want.abs()[mask].max().item()
        return {"tiny_max_logit_error": round(error, 5), "tiny_max_logit": round(scale, 3),
                "tiny_relative_error": round(error / scale, 5), "tiny_kernels": kernels(backend.model),
                "tiny_ok": error < 1e-2 * scale}


def speed(backend, tokens: int, batch: int) -> dict:
    import torch

    from engine.generation import GenerationSettings
    from engine.textgen.base import GenRequest, Prompt

    prompt = backend.render(Prompt(
        "You are the Dungeon Master of a fantasy campaign. Narrate vividly in the second person.",
        "Bram: I push open the door of the old mill and raise my lantern.",
        "Bram pushes open the door of the old mill and raises his lantern."))
    settings = GenerationSettings(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, repetition_penalty=1.0)
    never = lambda row: False  # noqa: E731

    def run(n: int) -> tuple[float, float]:
        first: list[float] = []
        torch.cuda.synchronize()
        start = time.perf_counter()
        backend.generate_batch([GenRequest(prompt, settings)] * n,
                               lambda row, text: first or first.append(time.perf_counter() - start), never)
        torch.cuda.synchronize()
        return time.perf_counter() - start, first[0] if first else float("nan")

    run(1)  # warm-up: kernels, caches
    one_s, ttft = run(1)
    many_s, _ = run(batch)
    return {"prompt_tokens": backend.count_tokens(prompt), "new_tokens": tokens,
            "tokens_per_s_1": round(tokens / one_s, 1), "first_token_s": round(ttft, 3),
            f"tokens_per_s_batch_{batch}": round(tokens * batch / many_s, 1),
            "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="a local GPTQ folder (without: only the tiny checkpoint)")
    parser.add_argument("--loader", choices=("auto-gptq", "transformers"), default="auto-gptq")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("error: torch is not installed (make setup-gptq or make setup-gptqmodel)", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print(f"error: bench/gptq_gpu.py needs a CUDA GPU; this machine has none (torch {torch.__version__}, "
              f"CUDA build: {torch.version.cuda or 'no'}). The CPU path is tested by tests/test_gptq_backend.py.",
              file=sys.stderr)
        return 2
    from engine.errors import Unavailable

    figures: dict = {"loader": args.loader, "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    try:
        figures.update(tiny_check(args.loader))
        if args.model:
            start = time.perf_counter()
            backend = load(args.loader, str(Path(args.model).expanduser()))
            figures.update(model=backend.name, load_s=round(time.perf_counter() - start, 1),
                           kernels=kernels(backend.model), dtype=str(backend.model.dtype))
            figures.update(speed(backend, args.tokens, args.batch))
    except Unavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info("done")
    emit(figures)
    return 0 if figures.get("tiny_ok") else 1


if __name__ == "__main__":
    bench_logging()
    sys.exit(main())
