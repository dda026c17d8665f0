"""The campaign as a file: export and import of a long campaign, and whether recall finds the same memories after.

A scripted campaign of --turns turns (1,000 by default) is built directly through the store and the memory bank
(the bundled embedder, real SQLite in a temp folder): three players, a roll every few turns (some secret), what
the DM's markers did under some turns, a summary every six turns, character sheets, quests, story cards, pinned
facts, a glossary, what each turn's prompt held. Then: export to JSON and to Markdown (seconds, bytes, gzipped
bytes), import of the JSON into a fresh database (seconds: checking the file, embedding the memories anew,
writing them in one transaction), the peak RSS after each step (resource.getrusage: the models are most of it),
and for --queries queries the share whose recall (top 5, the shipped min_score) is the same before and after
the import (goal 1.0); the load average before and after (2 cores here: anything else running shows).

Usage: python bench/record.py [--turns 1000] [--queries 24]. JSON on the last line.
"""
from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

from common import bench_logging, emit, log

PLAYERS = {1001: "Aria", 1002: "Bram", 1003: "Cyra"}
PLACES = ["the salt marsh", "the drowned chapel", "Harrow Keep", "the copper mine", "the Weeping Bridge",
          "the lighthouse of Saltmere", "the ferry landing", "the abbey crypt", "the smugglers' cove", "Greywater market",
          "the old quarry", "the heron tower"]
PEOPLE = ["Osric the ferryman", "Abbess Maudlin", "the tinker Pell", "Captain Vey", "old Nan Brisk", "the eel-priest Sorrow",
          "Lord Aldren", "the bard Tamsin", "Gorrik the smith", "the witch of Fenmoor"]
THINGS = ["a silver key shaped like a heron", "a map drawn in tar", "the drowned crown", "a jar of glowing eels",
          "a bronze bell", "a letter sealed in green wax", "a lantern that never goes out", "a bone flute",
          "a purse of Vey's doubloons", "a compass that points to the dead"]
DEEDS = ["searches {place} for {thing}", "asks {person} about {thing}", "follows {person} into {place}",
         "hides {thing} beneath a loose stone in {place}", "bargains with {person} over {thing}",
         "keeps watch at {place}", "reads {thing} by candlelight", "sneaks past {person}"]
MANNERS = ["quietly", "in haste", "with a lantern held high", "without a word", "grinning", "soaked to the bone",
           "at dusk", "before the second bell"]
WEATHER = ["Rain hammers the slates.", "Fog rolls in off the water.", "A cold wind carries the smell of tar.",
           "Gulls scream overhead.", "The tide turns with a sigh.", "Somewhere a bell tolls twice."]
FACTS = ["Osric the ferryman owes Captain Vey forty doubloons.", "The drowned crown can only be lifted by a Harrow.",
         "Abbess Maudlin is Lord Aldren's sister.", "Eels will not cross running salt water.",
         "The heron key opens the lighthouse vault.", "Tamsin the bard is a spy for the witch of Fenmoor.",
         "Greywater market closes at the second bell.", "Gorrik the smith lost his hand in the copper mine.",
         "Nan Brisk knows every tunnel under the abbey.", "The Weeping Bridge floods at every spring tide."]


def narration(rng: random.Random, number: int) -> str:
    place, person, thing = rng.choice(PLACES), rng.choice(PEOPLE), rng.choice(THINGS)
    parts = [rng.choice(WEATHER),
             f"At {place}, {person} waits with {thing} held close.",
             f"{rng.choice(list(PLAYERS.values()))} notices a mark on the wall: the number {number}, scratched fresh.",
             f"{person.split()[-1]} says that {rng.choice(PLACES)} is no longer safe after dark."]
    if rng.random() < 0.5:
        parts.append(f"Far off, {rng.choice(PEOPLE)} is seen carrying {rng.choice(THINGS)} toward {rng.choice(PLACES)}.")
    return " ".join(parts)


def action(rng: random.Random, name: str, number: int) -> str:
    deed = rng.choice(DEEDS).format(place=rng.choice(PLACES), person=rng.choice(PEOPLE), thing=rng.choice(THINGS))
    return f"{name} {deed}, {rng.choice(MANNERS)} on day {number // 3 + 1}."


def queries(count: int, rng: random.Random) -> list[str]:
    made = [f"What does {person} know about {thing}?" for person, thing in zip(PEOPLE, THINGS)]
    made += [f"Who was seen at {place}?" for place in PLACES]
    made += [f"Where is {thing}?" for thing in THINGS]
    made += ["the mark on the wall with the number 512", "Aria rolls for stealth", "who owes money to the captain"]
    rng.shuffle(made)
    return made[:count]


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: kilobytes


async def build(store, bank, turns: int) -> int:
    """The scripted campaign, made through the store and the memory bank as the bot makes one."""
    from engine.game import Sheet

    rng = random.Random(7)
    campaign = await store.create_campaign(1, "The Saltmere Debts", premise="Old debts come due in a storm-wracked port.",
                                           style="grim and wry", settings={"summarize_every": 6})
    pinned = [await bank.pin(campaign.id, fact) for fact in FACTS]
    cards = [await store.add_card(campaign.id, [person.split()[-1]], f"{person}: a figure of Saltmere with secrets.",
                                  f"{person}.") for person in PEOPLE]
    for author, name in PLAYERS.items():
        await store.set_player(campaign.id, author, name, joined=True)
        await store.save_sheet(campaign.id, author, Sheet(name=name, hp=20, max_hp=24, ac=13, gold=5).to_json())
        await store.set_term(campaign.id, name, name, auto=True)
    recent: list = []
    began = time.perf_counter()
    for number in range(1, turns + 1):
        actions = []
        for author, name in PLAYERS.items():
            actions.append(await store.add_action(campaign.id, author, name, action(rng, name, number)))
        if number % 4 == 0:
            author = rng.choice(list(PLAYERS))
            total = rng.randint(2, 25)
            actions.append(await store.add_action(campaign.id, author, PLAYERS[author],
                                                  f"[rolled 1d20+5 for Stealth = {total}]", secret=number % 12 == 0))
        text = narration(rng, number)
        memories = await bank.turn_entries(actions, text)
        context = {"pinned": [{"id": m.id, "kind": "fact", "text": m.text, "turn_from": None, "turn_to": None}
                              for m in pinned[:3]],
                   "recalled": [{"id": m.id, "kind": m.kind, "text": m.shown, "turn_from": m.turn_from,
                                 "turn_to": m.turn_to, "similarity": 0.5, "words": []} for m in recent[-5:]],
                   "window": list(range(max(1, number - 7), number + 1)), "offered": list(range(max(1, number - 7), number + 1)),
                   "prompt_tokens": 1500, "budget": 1800,
                   "cards": [{"id": cards[number % len(cards)].id, "key": "Vey", "text": cards[number % len(cards)].text}]}
        hurt = number % 5 == 0

        def settle(sheets, fight, before, hurt=hurt, number=number):
            lines = [f"Bram takes {number % 4 + 1} damage (HP 18/24)"] if hurt else []
            return {}, fight, {"applied": [], "lines": lines, "requests": []}

        _, added = await store.commit_turn(campaign.id, [a.id for a in actions], text, memories, context=context,
                                           settle=settle)
        recent = (recent + added)[-20:]
        if number % 6 == 0:
            summary = f"Turns {number - 5} to {number}: " + " ".join(narration(rng, number).split(". ")[:2])
            await store.add_memory(campaign.id, await bank.summary_entry(summary, number - 5, number))
        if number % 100 == 0:
            log.info("built %d turns (%.0f s)", number, time.perf_counter() - began)
    for index in range(10):
        quest = await store.add_quest(campaign.id, f"Settle the debt of {PEOPLE[index]}", PEOPLE[(index + 3) % 10],
                                      f"{10 * (index + 1)} gold")
        for step in range(3):
            await store.update_quest(campaign.id, quest.id, step=f"step {step + 1}: asked around {PLACES[step]}")
        if index % 3 == 0:
            await store.update_quest(campaign.id, quest.id, status="done")
    await store.add_action(campaign.id, 1001, "Aria", "Aria waits for the tide.")
    return campaign.id


async def measure(turns: int, query_count: int, folder: Path) -> dict:
    from engine.jobs.worker import ModelWorker
    from engine.memory.bank import MemoryBank
    from engine.memory.embeddings import Embedder
    from engine.store.campaigns import Store
    from engine.table.record_file import dumps, export_json, export_markdown, import_json, packed

    embedder = Embedder.load("bundled:minilm")
    worker = ModelWorker("embedder", lambda: embedder)
    await worker.start()
    source, target = await Store.open(str(folder / "source.sqlite3")), await Store.open(str(folder / "target.sqlite3"))
    try:
        bank = MemoryBank(source, worker, embedder.id)
        load_before = os.getloadavg()[0]
        began = time.perf_counter()
        campaign_id = await build(source, bank, turns)
        figures: dict = {"turns": turns, "build_s": round(time.perf_counter() - began, 1),
                         "memories": await source.memory_count(campaign_id), "rss_after_build_mb": peak_rss_mb()}

        began = time.perf_counter()
        data = dumps(await export_json(source, campaign_id))
        figures["export_json_s"] = round(time.perf_counter() - began, 3)
        began = time.perf_counter()
        book = (await export_markdown(source, campaign_id)).encode()
        figures["export_markdown_s"] = round(time.perf_counter() - began, 3)
        began = time.perf_counter()
        zipped = gzip.compress(data, compresslevel=9, mtime=0)
        figures["gzip_json_s"] = round(time.perf_counter() - began, 3)
        figures.update(json_bytes=len(data), json_gzip_bytes=len(zipped), markdown_bytes=len(book),
                       markdown_gzip_bytes=len(gzip.compress(book, compresslevel=9, mtime=0)),
                       json_parts_at_10mb=len(packed("c.json", data, 10 * 1024 * 1024)),
                       rss_after_export_mb=peak_rss_mb())

        other = MemoryBank(target, worker, embedder.id)
        marks: list[float] = []
        began = time.perf_counter()
        imported = await import_json(target, other, 1, data, progress=lambda done, total: marks.append(time.perf_counter()))
        ended = time.perf_counter()
        figures.update(import_s=round(ended - began, 2), import_check_s=round(marks[0] - began, 2),
                       import_embed_s=round(marks[-1] - marks[0], 2), import_write_s=round(ended - marks[-1], 2),
                       rss_after_import_mb=peak_rss_mb())
        began = time.perf_counter()
        await import_json(target, other, 2, zipped)
        figures["import_gzip_s"] = round(time.perf_counter() - began, 2)
        figures["same_counts"] = (
            (await source.turn_count(campaign_id), await source.memory_count(campaign_id),
             len(await source.recent_rolls(campaign_id, 10**6)))
            == (await target.turn_count(imported.id), await target.memory_count(imported.id),
                len(await target.recent_rolls(imported.id, 10**6))))

        same, differ = 0, []
        for query in queries(query_count, random.Random(3)):
            before = await bank.recall(campaign_id, query, top_k=5, min_score=0.25)
            after = await other.recall(imported.id, query, top_k=5, min_score=0.25)
            shown = lambda found: [(r.memory.kind, r.memory.speaker, r.memory.text) for r in found]
            if shown(before) == shown(after):
                same += 1
            else:
                differ.append(query)
        figures.update(queries=query_count, recall_same=same, recall_same_share=round(same / query_count, 3),
                       recall_differ=differ, load_before=round(load_before, 2), load_after=round(os.getloadavg()[0], 2))
        return figures
    finally:
        await source.close()
        await target.close()
        await worker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=24)
    args = parser.parse_args()
    bench_logging()
    with tempfile.TemporaryDirectory(prefix="dm-record-") as folder:
        figures = asyncio.run(measure(args.turns, args.queries, Path(folder)))
    log.info("record: %s", figures)
    emit(figures)
    return 0 if figures["recall_same_share"] == 1.0 and figures["same_counts"] else 1


if __name__ == "__main__":
    sys.exit(main())
