"""Narration craft: does the DM keep its voice, and does it end where a sentence ends?

A scripted campaign (three named players, varied actions: fights, talk with NPCs, a player's own
quoted words, first-person and third-person actions, a turn with only a direction) is played through
the whole engine: the bundled text model, the shipped generation settings (sampled, a fixed seed),
SQLite in a temp folder, offline. Every narration the model drew is recorded as it came out (raw: drawn
with the voice guard of engine/textgen/voice.py, as it generates now), as it streamed (every view the
table was shown, engine.table.kept_text.kept(final=False) after each token) and as it was posted
(engine.table.kept_text.posted_narration: cleaned, whole sentences). Figures:
- judge_precision, judge_recall, judge_items: the voice detector (engine.table.narration.voice_faults:
  first person outside quotes, a player's line, an echoed prompt header or script label such as
  "Player:") scored on narrations labelled by hand (bench/narration_labels.py), misjudged ones logged;
- raw_off_voice_rate: share of the model's raw draws the detector finds off voice (goal <= 0.10);
  raw_first_person_rate, raw_player_line_rate split it, raw_echo_rate the draws that echo the prompt;
- off_voice_rate: the same for the posted narrations (goal <= 0.02), first_person_rate and
  player_line_rate split it; posted_off_voice: how many; echo_rate: those that echo the prompt;
- streamed_taken_back: turns where the table was shown text (while it streamed) that the posted
  narration does not begin with (goal 0); streamed_taken_back_chars the most characters so taken back;
- ends_sentence_rate: share of posted narrations ending at a sentence end (goal 1.0);
- mean_chars, mean_words of the posted narrations (raw_mean_chars beside them);
- seconds_per_turn, how many turns needed a second draw or failed; text_backend and text_model: what ran.
--judge-only prints the judge's figures alone, without loading a model (seconds).
--dump FILE writes one JSON line per draw (prompt tail, raw, posted) to judge the cleaning by eye.
Usage: python bench/narration.py [--turns 20] [--seed 1234] [--max-new-tokens 200] [--backend auto] [--dump FILE]
       [--judge-only]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

from common import MODEL_CACHE, bench_logging, emit, log
from narration_labels import LABELS

from bot.config import parse_config
from bot.services import build_services, choose_backend
from engine.errors import EngineError
from engine.generation import GenerationSettings
from engine.jobs.job import Job
from engine.table.kept_text import kept
from engine.table.narration import echo_at, ends_at_sentence, first_person, player_line, voice_faults

GOAL_ENDS, GOAL_OFF_VOICE, GOAL_RAW_OFF_VOICE, GOAL_TAKEN_BACK = 1.0, 0.02, 0.10, 0
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


def echoes(text: str) -> bool:
    """Whether a narration echoes its prompt's headers or a script's labels (a line of it does)."""
    return any(echo_at(line) is not None for line in text.splitlines())


def judge(text: str, names: set[str]) -> dict:
    """One narration's figures; a fault sentence that is not in the first person speaks for a player."""
    faults = voice_faults(text, names)
    echo = echoes(text)
    return {"chars": len(text), "words": len(text.split()), "ends": ends_at_sentence(text), "faults": faults,
            "off_voice": bool(faults), "first_person": any(first_person(s) for s in faults),
            "player_line": any(player_line(s, names) or not first_person(s) for s in faults),
            "echo": echo}


def score_judge(detector: Callable[[str, set[str]], bool], label: str = "detector") -> dict:
    """The detector's precision and recall on the hand-labelled narrations (off voice = positive); the
    items it misjudges go to the log."""
    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    wrong = []
    for item in LABELS:
        said = bool(detector(item.text, set(item.names)))
        counts[("t" if said == item.off_voice else "f") + ("p" if said else "n")] += 1
        if said != item.off_voice:
            wrong.append(item)
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    for item in wrong:
        log.info("%s misjudged (labelled %s, %s): %r", label, "off voice" if item.off_voice else "in voice",
                 item.reason, item.text)
    figures = {"precision": round(tp / (tp + fp), 3) if tp + fp else 0.0,
               "recall": round(tp / (tp + fn), 3) if tp + fn else 0.0,
               "items": len(LABELS), "misjudged": len(wrong), **counts}
    log.info("%s on %d labelled narrations: %s", label, len(LABELS), figures)
    return figures


def judge_figures() -> dict:
    """The judge's figures for the JSON."""
    figures = score_judge(lambda text, names: voice_faults(text, names), "voice_faults")
    return {"judge_precision": figures["precision"], "judge_recall": figures["recall"], "judge_items": figures["items"],
            "judge_misjudged": figures["misjudged"], "judge_labelled_off_voice": figures["tp"] + figures["fn"]}


@dataclass
class Draw:
    """One narration the model drew: its prompt, its raw text, the names the table's view used, and the
    pieces it streamed in."""
    prompt: str
    raw: str
    names: set[str]
    pieces: list[str] = field(default_factory=list)

    def taken_back(self) -> int:
        """The most characters the table was shown while this draw streamed (kept(final=False) after each
        piece) that the posted text (kept(final=True)) does not begin with; -1 when nothing was taken back."""
        final, text, worst = kept(self.raw, self.names, final=True), "", -1
        for piece in self.pieces:
            text += piece
            view = kept(text, self.names, final=False)
            if not final.startswith(view):
                same = next((i for i, (a, b) in enumerate(zip(view, final)) if a != b), min(len(view), len(final)))
                worst = max(worst, len(view) - same)
        if text != self.raw:
            log.warning("the streamed pieces differ from the text returned: %r vs %r", text[-80:], self.raw[-80:])
        return worst


def rate(rows: list[dict], key: str) -> float:
    return round(sum(1 for r in rows if r[key]) / len(rows), 3) if rows else 0.0


def mean(rows: list[dict], key: str) -> float:
    return round(sum(r[key] for r in rows) / len(rows), 1) if rows else 0.0


async def main(turns: int, seed: int, max_new_tokens: int, dump: str | None, backend: str = "auto") -> dict:
    import torch

    folder = tempfile.mkdtemp(prefix="bench-narration-")
    config = parse_config({"storage": {"path": f"{folder}/dm.sqlite3"}, "llm": {"cache_dir": MODEL_CACHE, "backend": backend}}, "bench")
    services = await build_services(config, log.info)
    try:
        torch.manual_seed(seed)
        return {"seed": seed, "do_sample": config.llm.generation.do_sample,
                "text_backend": choose_backend(config)[0], "text_model": services.backend.name,
                **judge_figures(), **await play(services, turns, max_new_tokens, dump)}
    finally:
        await services.close()  # also when a turn fails: the model workers must not keep the process alive


async def play(services, turns: int, max_new_tokens: int, dump: str | None) -> dict:
    backend = services.backend
    draws: list[Draw] = []  # every narration the model drew, with the pieces it streamed in
    original = backend.generate_batch

    def recording(requests, on_token, should_stop):
        batch = [Draw(r.text, "", set(r.voice.player_names) if r.voice else set(PLAYERS)) for r in requests]

        def sink(index: int, piece: str) -> None:
            batch[index].pieces.append(piece)  # only kept here: the views are judged after the batch
            on_token(index, piece)

        out = original(requests, sink, should_stop)
        for draw, text in zip(batch, out):
            if NOW_HEADER in draw.prompt:
                draw.raw = text
                draws.append(draw)
        return out

    backend.generate_batch = recording
    game = await services.store.create_campaign(1, "narration", PREMISE, settings={"max_new_tokens": max_new_tokens})
    names = set(PLAYERS)
    raw, posted, lines, failed, redrawn, seconds = [], [], [], 0, 0, []
    taken_back, taken_back_chars = 0, 0
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
        raw.extend(judge(draw.raw, names) for draw in drawn)
        lost = max((draw.taken_back() for draw in drawn), default=-1)
        if lost >= 0:
            taken_back += 1
            taken_back_chars = max(taken_back_chars, lost)
            log.warning("turn %d: the stream showed text the posted narration lacks (%d chars)", number, lost)
        if narration is not None:
            posted.append(judge(narration, names))
            log.info("turn %d (%.1f s, %d draw(s)): %s%r", number, seconds[-1], len(drawn),
                     "OFF VOICE " if posted[-1]["off_voice"] else "", narration[:160])
        for draw in drawn:
            prompt, text = draw.prompt, draw.raw
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
        "posted_off_voice": sum(1 for r in posted if r["off_voice"]), "echo_rate": rate(posted, "echo"),
        "streamed_taken_back": taken_back, "streamed_taken_back_chars": taken_back_chars,
        "goal_streamed_taken_back": GOAL_TAKEN_BACK,
        "mean_chars": mean(posted, "chars"), "mean_words": mean(posted, "words"),
        "raw_ends_sentence_rate": rate(raw, "ends"), "raw_off_voice_rate": rate(raw, "off_voice"),
        "goal_raw_off_voice_rate": GOAL_RAW_OFF_VOICE, "raw_echo_rate": rate(raw, "echo"),
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
    parser.add_argument("--backend", default="auto", help='llm.backend: "auto" (the default), "transformers", "llama.cpp"')
    parser.add_argument("--judge-only", action="store_true",
                        help="only score the voice detector on the hand-labelled narrations (no model)")
    args = parser.parse_args()
    if args.turns < 1:
        parser.error("--turns must be at least 1")
    if args.judge_only:
        emit(judge_figures())
    else:
        emit(asyncio.run(main(args.turns, args.seed, args.max_new_tokens, args.dump, args.backend)))
