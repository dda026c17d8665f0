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
