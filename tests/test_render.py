"""Splitting and streaming narration for Discord, without Discord: the pieces the cogs render with."""
from __future__ import annotations

from cogs.render import LIMIT, WRITING, NarrationStream, split_message, split_point


def test_split_keeps_every_word_and_prefers_paragraphs_then_sentences():
    text = ("The rain falls. " * 80).strip() + "\n\n" + ("Bram runs! " * 150).strip()
    parts = split_message(text, 2000)
    assert all(len(p) <= 2000 for p in parts) and len(parts) >= 2
    assert " ".join(parts).split() == text.split()
    assert parts[0].endswith("The rain falls.")  # cut at the paragraph, not inside it
    assert split_message("") == [""] and split_message("short") == ["short"]
    assert split_point("x" * 3000, 2000) == 2000  # no space anywhere: a hard cut


async def test_stream_edits_grow_then_finish_without_the_writing_mark():
    shown: list[tuple[int, str]] = []

    async def show(index: int, content: str) -> None:
        shown.append((index, content))

    stream = NarrationStream(show, interval=0)
    for text in ("The door", "The door creaks", "The door creaks open."):
        await stream.update(text)
    await stream.finish("The door creaks open.")
    assert shown[0] == (0, "The door" + WRITING)
    assert shown[-1] == (0, "The door creaks open.")
    assert [i for i, _ in shown] == [0, 0, 0, 0]


async def test_stream_throttles_edits_and_continues_past_the_limit_in_new_messages():
    shown: list[tuple[int, str]] = []

    async def show(index: int, content: str) -> None:
        shown.append((index, content))

    stream = NarrationStream(show, interval=3600)  # only the first update may edit within the hour
    words = ["word"] * 1000
    for n in range(1, len(words) + 1, 50):
        await stream.update(" ".join(words[:n]))
    assert len(shown) == 1
    final = " ".join(words)
    await stream.finish(final, note="turn 3")
    latest = {}
    for index, content in shown:
        latest[index] = content
    assert len(latest) == 3 and all(len(c) <= LIMIT for c in latest.values())
    assert latest[2].endswith("-# turn 3")
    assert " ".join(latest[i] for i in sorted(latest)).replace("\n-# turn 3", "").split() == final.split()


async def test_a_final_text_shorter_than_the_stream_blanks_the_extra_message():
    shown: dict[int, str] = {}

    async def show(index: int, content: str) -> None:
        shown[index] = content

    stream = NarrationStream(show, interval=0)
    await stream.update("a " * 1500)
    await stream.finish("a short ending")
    assert shown[0] == "a short ending" and shown[1] == "-# …"


async def test_a_note_never_pushes_a_message_past_the_limit():
    shown: dict[int, str] = {}

    async def show(index: int, content: str) -> None:
        shown[index] = content

    stream = NarrationStream(show, interval=0)
    text = ("The rain falls on the marsh. " * 68).strip()  # one part of ~1,900 characters
    await stream.finish(text, note="2 newer action(s) did not fit in this turn; they wait for the next one")
    assert all(len(c) <= 2000 for c in shown.values()), [len(c) for c in shown.values()]
    assert shown[0] == text and shown[1].startswith("-# 2 newer action(s)")
    await stream.finish("Short.", note="x" * 3000)  # a note of any length
    assert all(len(c) <= 2000 for c in shown.values())


def test_a_page_of_markdown_heavy_memories_stays_within_one_message():
    from cogs.memory import memory_page
    from engine.records import Memory

    facts = [Memory(i, 1, "fact", "*_~|" * 300, None, "", None, None, True, 0.0, None) for i in range(10)]
    page = memory_page(facts, 0)
    assert len(page) <= 2000 and page.count("📌") == 10  # every fact on the page, each shortened
