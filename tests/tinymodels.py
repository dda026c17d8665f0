"""Tiny random-weight models with local word-level tokenizers, built in a temp folder in about a second.

They exercise the code paths of real architectures (a GPT-2 for the continuation prompt shape, a
BART for seq2seq summaries) without any download. Import as `import tinymodels` (never `tests.x`).

Every vocabulary word is purely alphabetic, and the unknown token is the plain word "unk", so any
decoded text encodes back into exactly as many tokens as were generated (the only special token
that can be generated is the end-of-sequence one, which decoding drops).
"""
from __future__ import annotations

from pathlib import Path

CORPUS = """
the party walks into the old tavern where a bard sings about dragons and gold and the keeper
pours ale for every traveller who comes in from the rain the knight draws her sword and the
wizard reads a scroll of fire while the rogue opens the door to the cellar below the castle
a dark forest lies beyond the river and the village elder warns them about wolves and ghosts
the smith forges a blade of silver for the hunter who pays him with coins from a leather purse
the dragon sleeps upon a hoard of treasure deep inside the mountain and nobody dares to wake it
the queen sends a letter to the captain asking for help against the raiders from the north sea
the ship sails at dawn with a crew of sailors a map of the islands and a chest full of supplies
the priest lights candles in the temple and prays for the souls lost in the battle at the bridge
the merchant sells rope lanterns bread cheese and apples to anyone with a few copper coins
the thief hides in the shadows of the market and steals a ring from the pocket of a noble lord
the bells ring at midnight and the guards close the gates of the city until the morning comes
a storm breaks over the hills and lightning strikes the tower where the mage keeps his books
the children play near the well and the old woman tells stories of heroes giants and kings
you find a key under the stone and a small door opens into a hall lit by blue green flames
he says hello friend and she answers with a smile then they drink to the health of the king
"""


def word_tokenizer(specials: list[str], **special_tokens: str):
    """A WordLevel tokenizer over CORPUS's words, wrapped for transformers."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted(set(CORPUS.split()) | {"unk"})
    vocab = {token: i for i, token in enumerate([*specials, *words])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="unk"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens(specials)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=64, **special_tokens)


def tiny_gpt2(folder: str | Path) -> Path:
    """A 2-layer GPT-2 (random weights) with a word-level tokenizer and no chat template."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = Path(folder)
    tokenizer = word_tokenizer(["<eos>"], eos_token="<eos>")
    eos = tokenizer.convert_tokens_to_ids("<eos>")
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=eos, eos_token_id=eos,
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = eos
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_bart(folder: str | Path) -> Path:
    """A 1+1-layer BART for conditional generation (random weights) with bos/eos/pad tokens."""
    import torch
    from tokenizers import processors
    from transformers import BartConfig, BartForConditionalGeneration

    folder = Path(folder)
    tokenizer = word_tokenizer(["<pad>", "<s>", "</s>"], pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    pad, bos, eos = (tokenizer.convert_tokens_to_ids(t) for t in ("<pad>", "<s>", "</s>"))
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    config = BartConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=64, pad_token_id=pad, bos_token_id=bos, eos_token_id=eos,
        decoder_start_token_id=eos, forced_eos_token_id=eos,
    )
    torch.manual_seed(0)
    model = BartForConditionalGeneration(config)
    with torch.no_grad():  # random weights tend to end at once: make them write words (up to the limit)
        model.final_logits_bias[0, [pad, bos, eos]] = -1e4
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ----- a tiny GPTQ checkpoint, written without any quantizer -----

GPTQ_BITS, GPTQ_GROUP = 4, 32
GPTQ_LAYERS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def gptq_pack(weight) -> tuple[dict, "object"]:
    """Round-to-nearest symmetric 4-bit GPTQ packing of one Linear weight (out x in).

    Returns the four tensors a GPTQ checkpoint holds for it (auto-gptq's "gptq" v1 format: qweight
    packs 8 values along the input dimension, qzeros 8 along the output one and stores zero - 1)
    and the float weight they decode to, which is what every GPTQ loader must compute with.
    """
    import torch

    out_f, in_f = weight.shape
    groups = in_f // GPTQ_GROUP
    w = weight.detach().float().reshape(out_f, groups, GPTQ_GROUP)
    maxq = 2**GPTQ_BITS - 1
    zero = (maxq + 1) // 2  # 8: symmetric
    scales = (w.abs().amax(dim=2) / (maxq - zero)).clamp(min=1e-4).half()  # (out, groups), stored as fp16
    q = torch.clamp(torch.round(w / scales.float()[:, :, None]) + zero, 0, maxq).to(torch.int64)
    dequant = (scales.float()[:, :, None] * (q - zero)).reshape(out_f, in_f)

    q = q.reshape(out_f, in_f).t().contiguous()  # (in, out)
    per_int = 32 // GPTQ_BITS
    qweight = torch.zeros(in_f // per_int, out_f, dtype=torch.int64)
    for k in range(per_int):
        qweight |= q[k::per_int, :] << (GPTQ_BITS * k)
    zeros = torch.full((groups, out_f), zero - 1, dtype=torch.int64) & maxq
    qzeros = torch.zeros(groups, out_f // per_int, dtype=torch.int64)
    for k in range(per_int):
        qzeros |= zeros[:, k::per_int] << (GPTQ_BITS * k)

    def int32(t):  # the bit pattern of an unsigned 32-bit word, as int32
        return torch.where(t >= 2**31, t - 2**32, t).to(torch.int32)

    tensors = {
        "qweight": int32(qweight), "qzeros": int32(qzeros), "scales": scales.t().contiguous(),
        "g_idx": torch.arange(in_f, dtype=torch.int32) // GPTQ_GROUP,
    }
    return tensors, dequant


def tiny_gptq_llama(folder: str | Path) -> tuple[Path, Path]:
    """A 2-layer Llama (random weights) as a 4-bit GPTQ checkpoint, plus the same model in float.

    `folder/gptq` holds what a GPTQ model on the hub holds (config.json with its quantization_config,
    quantize_config.json, model.safetensors with qweight/qzeros/scales/g_idx, the tokenizer);
    `folder/float` is a plain Llama whose Linear weights are exactly the ones the GPTQ tensors
    decode to, so both must give the same logits.
    """
    import json

    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    gptq_dir, float_dir = folder / "gptq", folder / "float"
    tokenizer = word_tokenizer(["<eos>"], eos_token="<eos>")
    eos = tokenizer.convert_tokens_to_ids("<eos>")
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # weights big enough that 4-bit rounding matters and logits are not flat
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2)

    state = {name: t.detach().clone().contiguous() for name, t in model.state_dict().items()}
    packed = {}
    for name in list(state):
        module = name.removesuffix(".weight")
        if name.endswith(".weight") and module.endswith(GPTQ_LAYERS):
            tensors, dequant = gptq_pack(state[name])
            with torch.no_grad():
                model.get_submodule(module).weight.copy_(dequant)
            packed.update({f"{module}.{k}": v for k, v in tensors.items()})
        else:
            packed[name] = state[name].half() if state[name].is_floating_point() else state[name]
    # The float model must hold exactly what the fp16 checkpoint holds (embeddings, norms, head too).
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name in packed:
                t.copy_(packed[name].float())
    model.generation_config.pad_token_id = eos
    model.save_pretrained(float_dir)
    tokenizer.save_pretrained(float_dir)

    quantize = {"bits": GPTQ_BITS, "group_size": GPTQ_GROUP, "damp_percent": 0.01, "desc_act": False,
                "static_groups": False, "sym": True, "true_sequential": True, "model_name_or_path": None,
                "model_file_base_name": "model"}
    gptq_dir.mkdir(parents=True, exist_ok=True)
    config.torch_dtype = "float16"
    config.quantization_config = {"quant_method": "gptq", "checkpoint_format": "gptq", **{k: quantize[k] for k in (
        "bits", "group_size", "desc_act", "sym", "damp_percent", "true_sequential", "static_groups")}}
    config.save_pretrained(gptq_dir)
    model.generation_config.save_pretrained(gptq_dir)
    (gptq_dir / "quantize_config.json").write_text(json.dumps(quantize, indent=2))
    save_file(packed, str(gptq_dir / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(gptq_dir)
    return gptq_dir, float_dir
