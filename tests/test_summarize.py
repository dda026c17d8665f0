"""The summarizer model (a BART, like the seed's), on a tiny random BART, alone and in its worker."""
from __future__ import annotations

from pathlib import Path

import pytest

import tinymodels
from engine.errors import Unavailable
from engine.records import Action, Turn
from engine.memory.summarize import PipelineSummarizer, Seq2SeqSummarizer, story_text, summary_prompt
from engine.jobs.worker import ModelWorker

STORY = (
    "the party walks into the old tavern where a bard sings about dragons and gold and the keeper "
    "pours ale for every traveller who comes in from the rain " * 6
)


@pytest.fixture(scope="module")
def bart_folder(tmp_path_factory) -> Path:
    return tinymodels.tiny_bart(tmp_path_factory.mktemp("tiny") / "bart")


@pytest.fixture(scope="module")
def summarizer(bart_folder) -> PipelineSummarizer:
    return PipelineSummarizer.load(str(bart_folder), max_tokens=8)


VOCABULARY = set(tinymodels.CORPUS.split()) | {"unk"}


def test_summary_is_bounded_text_in_the_models_words(summarizer, bart_folder):
    assert isinstance(summarizer.pipe, Seq2SeqSummarizer)
    summary = summarizer.summarize(STORY)
    assert isinstance(summary, str)
    words = summary.split()
    assert 1 <= len(words) <= 8
    assert set(words) <= VOCABULARY  # special tokens are dropped
    assert summary == summary.strip()


def test_max_tokens_is_honoured(bart_folder):
    short = PipelineSummarizer.load(str(bart_folder), max_tokens=3)
    assert 1 <= len(short.summarize(STORY).split()) <= 3


def test_long_input_is_cut_to_the_models_positions(bart_folder):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(bart_folder))
    tokenizer.model_max_length = int(1e30)  # what tokenizers without a known length say
    model = AutoModelForSeq2SeqLM.from_pretrained(str(bart_folder)).eval()
    summarizer = PipelineSummarizer(Seq2SeqSummarizer(model, tokenizer), max_tokens=8)
    assert summarizer.pipe.max_input == 64  # BartConfig.max_position_embeddings
    # Thousands of words must be cut to 64 positions, not crash the position lookup.
    assert 1 <= len(summarizer.summarize(STORY * 20).split()) <= 8


def test_summarizer_built_by_hand_from_a_model_and_tokenizer(bart_folder):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    model = AutoModelForSeq2SeqLM.from_pretrained(str(bart_folder)).eval()
    direct = PipelineSummarizer(Seq2SeqSummarizer(model, AutoTokenizer.from_pretrained(str(bart_folder))), max_tokens=8)
    loaded = PipelineSummarizer.load(str(bart_folder), max_tokens=8)
    assert direct.summarize(STORY) == loaded.summarize(STORY)  # the default generation is greedy


@pytest.mark.parametrize("spec", ["/nonexistent", "./nowhere", "~/no-such-summarizer", "not a model"])
def test_missing_summarizer_is_unavailable(spec):
    with pytest.raises(Unavailable) as caught:
        PipelineSummarizer.load(spec, max_tokens=8)
    assert str(caught.value) == f"summarizer model not found: {spec}"


def test_folder_that_is_no_model_is_unavailable(tmp_path):
    with pytest.raises(Unavailable, match="^cannot load summarizer "):
        PipelineSummarizer.load(str(tmp_path), max_tokens=8)


async def test_summarizer_answers_from_its_worker(bart_folder):
    worker = ModelWorker("summarizer", lambda: PipelineSummarizer.load(str(bart_folder), max_tokens=8))
    loaded = await worker.start()
    try:
        assert isinstance(loaded, PipelineSummarizer) and worker.available
        summary = await worker.call(lambda s: s.summarize(STORY), timeout=60)
        assert summary == loaded.summarize(STORY)
        assert 1 <= len(summary.split()) <= 8
    finally:
        await worker.stop()
    assert not worker.available


async def test_worker_with_a_missing_summarizer_fails_to_start():
    worker = ModelWorker("summarizer", lambda: PipelineSummarizer.load("/nonexistent", max_tokens=8))
    with pytest.raises(Unavailable, match="summarizer model not found"):
        await worker.start()
    assert not worker.available


def test_story_text_and_summary_prompt_keep_every_line():
    ann = Action(1, 1, 10, "Ann", "I pay the smith 30 gold.", 0.0, 1)
    bram = Action(2, 1, 11, "Bram", "I guard the door.", 0.0, 1)
    turns = [Turn(1, 1, 1, "The smith counts the coins.", (ann, bram), 0.0), Turn(2, 1, 2, "Night falls.", (), 0.0)]
    text = story_text(turns)
    assert text == "Ann: I pay the smith 30 gold.\nBram: I guard the door.\nDM: The smith counts the coins.\nDM: Night falls."
    prompt = summary_prompt(text)
    assert prompt.user == text and prompt.continuation == f"{text}\n\nIn short:"
    assert "exactly as written" in prompt.system
