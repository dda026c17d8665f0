"""GPTQ checkpoints: auto-gptq (llm.backend = "auto-gptq") and transformers' own GPTQ integration.

No quantizer runs on a CPU, so the tests write a tiny 4-bit GPTQ Llama themselves (tinymodels) beside a
float Llama holding exactly the weights it encodes: a loader is right when its logits match that model.
The auto-gptq tests run under `make test-gptq` (.venv-gptq, transformers 4), the gptqmodel ones under
`make test-gptqmodel` (.venv-gptqmodel); in .venv both skip, saying so, and only the refusals run.
"""
from __future__ import annotations

import asyncio
import importlib.util
import json

import pytest

import tinymodels
from engine.errors import Unavailable
from engine.generation import GenerationSettings
from engine.textgen.base import GenRequest
from engine.textgen.gptq_backend import NEEDS_SETUP

HAS_AUTO_GPTQ = importlib.util.find_spec("auto_gptq") is not None
HAS_GPTQMODEL = all(importlib.util.find_spec(p) for p in ("gptqmodel", "optimum"))
needs_auto_gptq = pytest.mark.skipif(
    not HAS_AUTO_GPTQ, reason="auto_gptq is not installed here; `make test-gptq` runs this in .venv-gptq")
needs_gptqmodel = pytest.mark.skipif(
    not HAS_GPTQMODEL, reason="gptqmodel + optimum are not installed here; `make test-gptqmodel` runs this")

GREEDY = GenerationSettings(max_new_tokens=8, min_new_tokens=8, do_sample=False, repetition_penalty=1.0)
TEXTS = ["the party walks into the old tavern where a bard", "the dragon sleeps"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """(the GPTQ folder, the float folder with the weights it encodes)."""
    return tinymodels.tiny_gptq_llama(tmp_path_factory.mktemp("gptq"))


@pytest.fixture(scope="module")
def reference(checkpoint):
    from engine.textgen.transformers_backend import TransformersBackend

    return TransformersBackend.from_folder(str(checkpoint[1]), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def gptq(checkpoint, reference):  # the reference is built first: auto-gptq used to break torch's init
    from engine.textgen.gptq_backend import load_gptq

    return load_gptq(str(checkpoint[0]), device="cpu")


def logits(backend, texts=TEXTS):
    import torch

    enc = backend.tokenizer(texts, return_tensors="pt", padding=True, return_token_type_ids=False)
    enc = enc.to(backend.model.device)
    with torch.inference_mode():
        return backend.model(**enc).logits.float(), enc["attention_mask"].bool()


def max_error(backend, reference) -> tuple[float, float]:
    """The largest logit difference on real (not padding) positions, and the largest logit."""
    got, mask = logits(backend)
    want, _ = logits(reference)
    return (got - want).abs()[mask].max().item(), want.abs()[mask].max().item()


def never(row: int) -> bool:
    return False


def generate(backend, texts=TEXTS, settings=GREEDY):
    pieces: dict[int, list[str]] = {}
    out = backend.generate_batch([GenRequest(t, settings) for t in texts],
                                 lambda row, text: pieces.setdefault(row, []).append(text), never)
    return out, {row: "".join(p) for row, p in pieces.items()}


def quantized_layers(model) -> set[str]:
    return {type(m).__name__ for m in model.modules() if hasattr(m, "qweight")}


# ----- what every profile checks -----

def test_the_checkpoint_is_what_a_gptq_loader_expects(checkpoint):
    from safetensors import safe_open

    gptq_dir, _ = checkpoint
    quantize = json.loads((gptq_dir / "quantize_config.json").read_text())
    assert quantize["bits"] == 4 and quantize["group_size"] == 32 and not quantize["desc_act"]
    assert json.loads((gptq_dir / "config.json").read_text())["quantization_config"]["quant_method"] == "gptq"
    with safe_open(str(gptq_dir / "model.safetensors"), "pt") as f:
        names = set(f.keys())
        assert f.get_tensor("model.layers.0.mlp.down_proj.qweight").shape == (128 // 8, 64)
    assert "model.layers.0.self_attn.q_proj.weight" not in names
    assert {f"model.layers.1.mlp.up_proj.{k}" for k in ("qweight", "qzeros", "scales", "g_idx")} <= names
    assert "lm_head.weight" in names  # the head and the embeddings stay in float16


def test_a_missing_auto_gptq_is_one_line_before_any_model_loads(make_config, monkeypatch):
    from bot.services import text_loader

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "auto_gptq" else real(name, *a))
    with pytest.raises(Unavailable) as caught:
        text_loader(make_config(llm={"backend": "auto-gptq", "model": "/nowhere"}), print)
    assert str(caught.value) == NEEDS_SETUP
    assert str(caught.value) == 'llm.backend = "auto-gptq" needs `make setup-gptq` (then run the bot with .venv-gptq/bin/python)'


@pytest.mark.skipif(HAS_AUTO_GPTQ, reason="auto_gptq is installed here")
def test_the_bot_says_so_in_one_line_without_a_traceback(tmp_path):
    from test_cli import run_bot

    config = tmp_path / "config.toml"
    config.write_text(f'[llm]\nbackend = "auto-gptq"\nmodel = "{tmp_path}"\n[storage]\npath = "{tmp_path / "dm.db"}"\n')
    result = run_bot("--config", str(config), "play")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: {NEEDS_SETUP}"


# ----- auto-gptq (.venv-gptq) -----

@needs_auto_gptq
def test_auto_gptq_computes_with_exactly_the_weights_the_checkpoint_encodes(gptq, reference):
    assert quantized_layers(gptq.model) == {"QuantLinear"}  # auto-gptq's layers, not float Linear
    assert not quantized_layers(reference.model)
    error, scale = max_error(gptq, reference)
    assert scale > 1 and error < 1e-3, (error, scale)


@needs_auto_gptq
def test_auto_gptq_generates_the_same_streamed_batch_as_the_float_model(gptq, reference):
    got, streamed = generate(gptq)
    want, _ = generate(reference)
    assert got == want and all(len(t.split()) == 8 for t in got)  # left-padded batch, greedy, same tokens
    assert streamed == {0: got[0], 1: got[1]}  # every row streamed, adding up to its text
    sampled, _ = generate(gptq, settings=GenerationSettings(max_new_tokens=6, do_sample=True, top_k=5))
    assert all(sampled)


@needs_auto_gptq
def test_auto_gptq_leaves_torch_init_as_it_found_it(gptq):
    import torch

    layer = torch.nn.Linear(64, 64)  # auto-gptq's from_quantized replaces these functions; we put them back
    assert layer.weight.abs().max() > 0 and layer.weight.std() > 0.01
    assert torch.nn.init.kaiming_uniform_.__module__ == "torch.nn.init"


@needs_auto_gptq
def test_auto_gptq_refusals_are_one_line(checkpoint, tmp_path):
    from engine.textgen.gptq_backend import load_gptq

    with pytest.raises(Unavailable, match="float16.*CPU"):
        load_gptq(str(checkpoint[0]), device="cpu", dtype="float16")
    with pytest.raises(Unavailable, match="cannot load GPTQ model"):  # a float model is no GPTQ checkpoint
        load_gptq(str(checkpoint[1]), device="cpu")
    with pytest.raises(Unavailable, match="not found"):
        load_gptq(str(tmp_path / "nope"), device="cpu")


@needs_auto_gptq
async def test_a_whole_turn_plays_on_auto_gptq(make_config, checkpoint, embedder, tmp_path):
    """bot.services loads the GPTQ model itself (backend = "auto-gptq") and the turn pipeline runs on it."""
    from bot.services import build_services
    from engine.jobs.job import Job
    from engine.textgen.transformers_backend import TransformersBackend

    config = make_config(llm={"backend": "auto-gptq", "model": str(checkpoint[0]), "device": "cpu",
                              "context_tokens": 256, "generation": {"max_new_tokens": 8}},
                         runner={"batch_wait_ms": 5})
    services = await build_services(config, embed_model=embedder)
    try:
        assert isinstance(services.backend, TransformersBackend) and quantized_layers(services.backend.model)
        store, edits = services.store, services.edits
        campaign = await store.create_campaign(10, "tavern", "the party walks into the old tavern")
        await edits.add_action(campaign.id, 1, "Bram", "the knight draws her sword")
        handle = services.runner.submit(Job(campaign.id, campaign.channel_id, "turn", payload={}))
        seen = [text async for text in handle.updates()]
        result = await asyncio.wait_for(handle.result(), 120)
        assert result.turn.number == 1 and result.turn.narration and seen
        assert await store.pending_actions(campaign.id) == []
        assert "Bram: the knight draws her sword" in [m.shown for m in await store.memories(campaign.id)]
    finally:
        await services.close()


# ----- transformers 5 + gptqmodel + optimum (.venv-gptqmodel) -----

@needs_gptqmodel
def test_transformers_loads_a_gptq_folder_through_gptqmodel(checkpoint, reference):
    """backend = "transformers" with a GPTQ folder: transformers' GPTQ integration picks gptqmodel's
    fastest CPU kernel (TorchAtenLinear, which computes in bfloat16: about 2% of the largest logit)."""
    from engine.textgen.transformers_backend import TransformersBackend

    backend = TransformersBackend.from_folder(str(checkpoint[0]), device="cpu")
    assert quantized_layers(backend.model)
    error, scale = max_error(backend, reference)
    assert scale > 1 and error < 0.05 * scale, (error, scale)
    got, streamed = generate(backend)
    assert all(len(t.split()) == 8 for t in got) and streamed == {0: got[0], 1: got[1]}


@needs_gptqmodel
def test_gptqmodels_plain_torch_kernel_matches_the_encoded_weights(checkpoint, reference):
    """Its float kernel ("torch") decodes the same weights (in float16: about 1e-3 of the largest logit)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPTQConfig

    from engine.textgen.transformers_backend import TransformersBackend

    model = AutoModelForCausalLM.from_pretrained(
        str(checkpoint[0]), dtype=torch.float32, quantization_config=GPTQConfig(bits=4, backend="torch")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint[0]))
    backend = TransformersBackend(model, tokenizer, AutoTokenizer.from_pretrained(str(checkpoint[0])), "gptq")
    assert quantized_layers(model) == {"TorchLinear"}
    error, scale = max_error(backend, reference)
    assert scale > 1 and error < 2e-3 * scale, (error, scale)
    assert generate(backend)[0] == generate(reference)[0]


@needs_gptqmodel
async def test_a_whole_turn_plays_on_transformers_with_a_gptq_folder(make_config, checkpoint, embedder):
    from bot.services import build_services
    from engine.jobs.job import Job

    config = make_config(llm={"model": str(checkpoint[0]), "device": "cpu", "context_tokens": 256,
                              "generation": {"max_new_tokens": 8}}, runner={"batch_wait_ms": 5})
    services = await build_services(config, embed_model=embedder)
    try:
        assert quantized_layers(services.backend.model)
        campaign = await services.store.create_campaign(11, "ship", "the ship sails at dawn")
        await services.edits.add_action(campaign.id, 1, "Ilsa", "the rogue opens the door")
        handle = services.runner.submit(Job(campaign.id, campaign.channel_id, "turn", payload={}))
        result = await asyncio.wait_for(handle.result(), 120)
        assert result.turn.number == 1 and result.turn.narration
    finally:
        await services.close()

