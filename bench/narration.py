"""Narration craft: does the DM keep its voice, and does it end where a sentence ends?

A scripted campaign (three named players, varied actions: fights, talk with NPCs, a player's own
quoted words, first-person and third-person actions, a turn with only a direction) is played through
the whole engine: the bundled text model, the shipped generation settings (sampled, a fixed seed),
SQLite in a temp folder, offline. Every narration the model drew is recorded as it came out (raw)
and as it was posted (engine.table.narrator.posted_narration: cleaned, whole sentences). Figures:
- ends_sentence_rate: share of posted narrations ending at a sentence end (goal 1.0);
- off_voice_rate: share of posted narrations with a sentence in the first person outside quotes or a
  player's line (engine.table.narration.voice_faults; goal <= 0.05); first_person_rate and
  player_line_rate split it; raw_* the same for the model's raw draws, before cleaning;
- mean_chars, mean_words of the posted narrations (raw_mean_chars beside them);
- seconds_per_turn, and how many turns needed a second draw or failed.
--dump FILE writes one JSON line per draw (prompt tail, raw, posted) to judge the cleaning by eye.
Usage: python bench/narration.py [--turns 20] [--seed 1234] [--max-new-tokens 200] [--dump FILE]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import dataclass

from common import MODEL_CACHE, bench_logging, emit, log

from bot.config import parse_config
from bot.services import build_services
from engine.errors import EngineError
from engine.generation import GenerationSettings
from engine.jobs.job import Job
from engine.table.narration import ends_at_sentence, first_person, player_line, voice_faults

GOAL_ENDS, GOAL_OFF_VOICE = 1.0, 0.05
NOW_HEADER = "What the players do now:"
PREMISE = ("The mountain town of Harrowdeep, snowed in for the winter, where three companions hunt the thief "
           "who stole the temple's silver bell.")
PLAYERS = {"Bram": 1, "Ilsa": 2, "Kel": 3}


@dataclass(frozen=True)
class Step:
    actions: tuple[tuple[str, str], ...]  # (player, what they write)
    direction: str = ""  # what /dm continue adds, if anything


SCRIPT = [
    Step((("Bram", "I push open the door of the Frozen Stag inn and stamp the snow off my boots."),
          ("Ilsa", "I look around the common room for anyone who seems nervous."))),
    Step((("Kel", 'I ask the innkeeper: "Who was in the temple the night the bell vanished?"'),)),
    Step((("Bram", "Bram orders three mugs of hot cider and sits by the fire."),
          ("Ilsa", "I slip a silver coin to the serving girl and ask what she has heard."))),
    Step((("Kel", "I cast a spell to detect magic on the stranger in the corner."),)),
    Step((("Ilsa", "I follow the stranger when he leaves, keeping to the shadows."),
          ("Bram", "I stay behind and keep an eye on the innkeeper."))),
    Step((), "A scream rings out from the street outside."),
    Step((("Bram", "I draw my axe and run outside toward the scream."),
          ("Kel", "Kel follows Bram, a ball of light floating above his hand."))),
    Step((("Ilsa", "I climb onto a rooftop to see where the thief is running."),)),
    Step((("Kel", 'I shout at the fleeing figure: "Stop in the name of the temple!"'),
          ("Bram", "I throw a snowball at his legs to trip him."))),
    Step((("Ilsa", "I jump down and pin the thief to the ground."),)),
    Step((("Bram", 'I ask the thief: "Where is the bell? Talk, or you sleep in the snow tonight."'),)),
    Step((("Kel", "I search the thief's pockets for anything strange."),
          ("Ilsa", "Ilsa keeps her dagger at the thief's throat."))),
    Step((("Bram", "I drag the thief back to the inn and tie him to a chair."),)),
    Step((("Ilsa", "I tell the innkeeper we need a quiet room and a pot of tea."),
          ("Kel", "I study the strange brass key we found on the thief."))),
    Step((), "The thief starts to talk."),
    Step((("Kel", "We set out for the old mine the thief spoke of, lanterns in hand."),)),
    Step((("Bram", "I test the rotten planks of the mine's entrance before stepping in."),
          ("Ilsa", "I check the tunnel walls for traps and tripwires."))),
    Step((("Kel", "I whisper a word of power to light the dark tunnel ahead."),)),
    Step((("Bram", "I charge the wolf that leaps out of the darkness."),
          ("Ilsa", "I throw a dagger at the wolf's flank."),
          ("Kel", "I shield my friends with a ward of frost."))),
    Step((("Ilsa", 'I call out to the shadows: "We know you are there. Show yourself!"'),)),
    Step((("Kel", "Kel unlocks the iron door at the end of the tunnel with the brass key."),)),
    Step((("Bram", "I lift the silver bell onto my shoulder."),
          ("Ilsa", "I look for a second way out of the mine."))),
    Step((("Kel", "I ring the bell once to see whether it is the real one."),)),
    Step((("Bram", "We carry the bell back to the temple through the snow."),
          ("Ilsa", "I ask the priestess what reward the temple promised."))),
]


def judge(text: str, names: set[str]) -> dict:
    """One narration's figures; a fault sentence that is not in the first person speaks for a player."""
    faults = voice_faults(text, names)
    return {"chars": len(text), "words": len(text.split()), "ends": ends_at_sentence(text), "faults": faults,
            "off_voice": bool(faults), "first_person": any(first_person(s) for s in faults),
            "player_line": any(player_line(s, names) or not first_person(s) for s in faults)}


def rate(rows: list[dict], key: str) -> float:
    return round(sum(1 for r in rows if r[key]) / len(rows), 3) if rows else 0.0


def mean(rows: list[dict], key: str) -> float:
    return round(sum(r[key] for r in rows) / len(rows), 1) if rows else 0.0


async def main(turns: int, seed: int, max_new_tokens: int, dump: str | None) -> dict:
    import torch

    folder = tempfile.mkdtemp(prefix="bench-narration-")
    config = parse_config({"storage": {"path": f"{folder}/dm.sqlite3"}, "llm": {"cache_dir": MODEL_CACHE}}, "bench")
    services = await build_services(config, log.info)
    try:
        torch.manual_seed(seed)
        return {"seed": seed, "do_sample": config.llm.generation.do_sample,
                **await play(services, turns, max_new_tokens, dump)}
    finally:
        await services.close()  # also when a turn fails: the model workers must not keep the process alive


async def play(services, turns: int, max_new_tokens: int, dump: str | None) -> dict:
    backend = services.backend
    draws: list[tuple[str, str]] = []  # (prompt, raw output) of every narration the model drew
    original = backend.generate_batch

    def recording(requests, on_token, should_stop):
        out = original(requests, on_token, should_stop)
        draws.extend((r.text, o) for r, o in zip(requests, out) if NOW_HEADER in r.text)
        return out

    backend.generate_batch = recording
    game = await services.store.create_campaign(1, "narration", PREMISE, settings={"max_new_tokens": max_new_tokens})
    names = set(PLAYERS)
    raw, posted, lines, failed, redrawn, seconds = [], [], [], 0, 0, []
    for number in range(turns):
        step = SCRIPT[number % len(SCRIPT)]
        for player, text in step.actions:
            await services.edits.add_action(game.id, PLAYERS[player], player, text)
        before = len(draws)
        start = time.perf_counter()
        narration = None
        try:
            result = await services.runner.submit(Job(game.id, 1, "turn", payload={"text": step.direction})).result()
            narration = result.turn.narration
        except EngineError as exc:  # "the model wrote nothing": counted, and the actions wait for the next turn
            failed += 1
            log.warning("turn %d failed: %s", number, exc)
        seconds.append(time.perf_counter() - start)
        drawn = draws[before:]
        redrawn += len(drawn) > 1
        raw.extend(judge(text, names) for _, text in drawn)
        if narration is not None:
            posted.append(judge(narration, names))
            log.info("turn %d (%.1f s, %d draw(s)): %s%r", number, seconds[-1], len(drawn),
                     "OFF VOICE " if posted[-1]["off_voice"] else "", narration[:160])
        for prompt, text in drawn:
            lines.append({"turn": number, "prompt": prompt, "actions": [f"{p}: {t}" for p, t in step.actions], "raw": text,
                          "posted": narration, "raw_faults": judge(text, names)["faults"],
                          "posted_faults": posted[-1]["faults"] if narration is not None else None})
    if dump:
        with open(dump, "w") as out:
            out.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    return {
        "turns": turns, "posted": len(posted), "failed_turns": failed, "redrawn_turns": redrawn,
        "draws": len(raw), "max_new_tokens": max_new_tokens,
        "ends_sentence_rate": rate(posted, "ends"), "goal_ends_sentence_rate": GOAL_ENDS,
        "off_voice_rate": rate(posted, "off_voice"), "goal_off_voice_rate": GOAL_OFF_VOICE,
        "first_person_rate": rate(posted, "first_person"), "player_line_rate": rate(posted, "player_line"),
        "mean_chars": mean(posted, "chars"), "mean_words": mean(posted, "words"),
        "raw_ends_sentence_rate": rate(raw, "ends"), "raw_off_voice_rate": rate(raw, "off_voice"),
        "raw_first_person_rate": rate(raw, "first_person"), "raw_player_line_rate": rate(raw, "player_line"),
        "raw_mean_chars": mean(raw, "chars"), "raw_mean_words": mean(raw, "words"),
        "seconds_per_turn": round(sum(seconds) / len(seconds), 2) if seconds else 0.0,
    }


if __name__ == "__main__":
    bench_logging()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--max-new-tokens", type=int, default=GenerationSettings().max_new_tokens)
    parser.add_argument("--dump", default=None, help="write every draw (raw and posted) as JSON lines here")
    args = parser.parse_args()
    if args.turns < 1:
        parser.error("--turns must be at least 1")
    emit(asyncio.run(main(args.turns, args.seed, args.max_new_tokens, args.dump)))
