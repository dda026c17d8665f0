"""Long-term memory: do facts the players set up early come back thirty turns later?

Scripted campaigns (bench/memory_campaigns.py) are played through the whole engine (bundled models,
SQLite in a temp folder, the config's memory settings): fact turns, each planting one concrete fact
with rare keywords; then at least 30 ordinary turns that mention none of them; then one probe turn
per fact that touches it again in other words. For each probe, the exact narration prompt the engine
sent to the model is searched for the fact's keywords outside the "What the players do now:"
section: found under "Things to remember:" is recall by memory, under "The story so far:" the recent
window. Each fact's rank is where its first entry (one holding a keyword) stood in that turn's recall,
searched again deeper (top DEEP_K, the same queries and window); the entries above a fact that was
not found are logged. Every narration prompt's token count is checked against the budget
(context_tokens - max_new_tokens). Greedy decoding (once: it draws nothing), and the shipped sampling
settings with each seed.
Usage: python bench/memory.py [--campaign first|second|both] [--mode greedy|sampled|both]
                              [--tokens 48 200] [--seeds 1 2 3] [--set memory.top_k=5 ...]
"""
from __future__ import annotations

import argparse
import asyncio
import random
import re
import tempfile
import time
import tomllib

from common import MODEL_CACHE, bench_logging, emit, log
from memory_campaigns import CAMPAIGNS, Campaign, Fact

from bot.config import parse_config
from bot.services import build_services
from engine.jobs.job import Job
from engine.table.prompt import INSTRUCTIONS

GOAL_RATE = 0.9  # the goal: 9 of 10 facts
DEEP_K = 30  # how deep each probe's recall is searched again to show a fact's rank
MEMORY_HEADER, STORY_HEADER, NOW_HEADER = "Things to remember:", "The story so far:", "What the players do now:"


def keyword_pattern(keyword: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(keyword)}(?!\w)", re.IGNORECASE)


def find_keyword(fact: Fact, text: str) -> str | None:
    for keyword in fact.keywords:
        if keyword_pattern(keyword).search(text):
            return keyword
    return None


def check_script(game: Campaign) -> None:
    """A fact only counts through words the probe itself (and nothing else in the script) does not hold."""
    assert len(game.facts) >= 10 and len(game.fillers) >= 30 and len({f.player for f in game.facts}) >= 4
    assert len({f.id for f in game.facts}) == len(game.facts)
    assert {f.player for f in game.facts} | {p for p, _ in game.fillers} <= set(game.players)
    for fact in game.facts:
        assert find_keyword(fact, fact.text), f"fact {fact.id} holds none of its keywords"
        for other in game.facts:
            assert not find_keyword(fact, other.probe), f"probe {other.id} holds {fact.id}'s keyword"
            assert other is fact or not find_keyword(fact, other.text), f"fact {other.id} holds {fact.id}'s keyword"
        assert not find_keyword(fact, game.premise + "\n" + INSTRUCTIONS), f"premise holds {fact.id}'s keyword"
        for _, text in game.fillers:
            assert not find_keyword(fact, text), f"filler {text!r} holds {fact.id}'s keyword"


def header_at(text: str, header: str, start: int = 0) -> re.Match[str] | None:
    return re.compile(rf"^{re.escape(header)}[ \t]*$", re.MULTILINE).search(text, start)


def split_prompt(prompt: str) -> tuple[str, str, str]:
    """(everything outside the now section, the memory section, the story section) of a narration prompt."""
    nows = list(re.finditer(rf"^{re.escape(NOW_HEADER)}[ \t]*$", prompt, re.MULTILINE))
    assert nows, "not a narration prompt"
    before = prompt[: nows[-1].start()]
    memory = story = ""
    mem = header_at(before, MEMORY_HEADER)
    st = header_at(before, STORY_HEADER, mem.end() if mem else 0)
    if mem:
        memory = before[mem.start(): st.start() if st else len(before)]
    if st:
        story = before[st.start():]
    return before, memory, story


def classify(fact: Fact, prompt: str) -> tuple[str, str | None]:
    """How the fact reached the probe's prompt: "memory", "recent window", "other" or "none"."""
    before, memory, story = split_prompt(prompt)
    for how, text in (("memory", memory), ("recent window", story), ("other", before)):
        keyword = find_keyword(fact, text)
        if keyword:
            return how, keyword
    return "none", None


def entry_label(memory) -> str:
    kind = {"exact": "action" if memory.speaker else "narration"}.get(memory.kind, memory.kind)
    span = "" if memory.turn_from is None else (
        f" t{memory.turn_from}" if memory.turn_from == memory.turn_to else f" t{memory.turn_from}-{memory.turn_to}")
    return kind + span


def rank_of(fact: Fact, deep: list) -> tuple[int | None, list[str]]:
    """The fact's first entry's rank (1-based) in a deep recall, and what stood above it."""
    ranked = [r for r in deep if r.score is not None]
    for i, r in enumerate(ranked):
        if find_keyword(fact, r.memory.text):
            above = [f"{entry_label(a.memory)} {a.score:.2f}: {a.memory.text[:70]!r}" for a in ranked[:i]]
            return i + 1, above + [f"FACT {entry_label(r.memory)} {r.score:.2f}"]
    return None, [f"{entry_label(a.memory)} {a.score:.2f}: {a.memory.text[:70]!r}" for a in ranked[:6]]


def parse_sets(pairs: list[str]) -> dict:
    overrides: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or "." not in key:
            raise SystemExit(f"--set wants section.key=value, not {pair!r}")
        try:
            parsed = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value
        *tables, name = key.strip().split(".")
        node = overrides
        for t in tables:
            node = node.setdefault(t, {})
        node[name] = parsed
    return overrides


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


async def campaign(game: Campaign, mode: str, tokens: int, seed: int, overrides: dict) -> tuple[dict, dict]:
    folder = tempfile.mkdtemp(prefix=f"bench-memory-{game.name}-{mode}-")
    config = parse_config(merge({"storage": {"path": f"{folder}/dm.sqlite3"}, "llm": {"cache_dir": MODEL_CACHE}},
                                overrides), "bench")
    services = await build_services(config, log.info)
    try:
        return await play(services, config, game, mode, tokens, seed)
    finally:  # also when a turn fails: the model workers must not keep the process alive
        await services.close()


async def play(services, config, game: Campaign, mode: str, tokens: int, seed: int) -> tuple[dict, dict]:
    import torch

    backend, bank = services.backend, services.memory
    prompts: list[str] = []
    original, search = backend.generate_batch, bank.search

    def recording(requests, on_token, should_stop):  # keep the exact prompts the engine sent
        prompts.extend(r.text for r in requests)
        return original(requests, on_token, should_stop)

    deep: list[list] = []  # per search the engine made: the same search, DEEP_K deep

    async def searching(campaign_id, probe, *, top_k, min_score, recent_from_turn):
        found = await search(campaign_id, probe, top_k=top_k, min_score=min_score, recent_from_turn=recent_from_turn)
        deep.append(await search(campaign_id, probe, top_k=max(top_k, DEEP_K), min_score=min_score,
                                 recent_from_turn=recent_from_turn))
        return found

    backend.generate_batch, bank.search = recording, searching
    settings = {"max_new_tokens": tokens, "min_new_tokens": tokens}
    if mode == "greedy":
        settings["do_sample"] = False
    store, edits = services.store, services.edits
    channel = 1
    row = await store.create_campaign(channel, f"memory-{game.name}-{mode}", game.premise, settings=settings)
    narrations: list[str] = []
    windows: list[int] = []  # how many recent turns each prompt held after the budget

    async def turn(player: str, text: str) -> str:
        await edits.add_action(row.id, game.players[player], player, text)
        handle = services.runner.submit(Job(row.id, channel, "turn"))
        result = await handle.result()
        narrations.append(result.turn.narration)
        windows.append(len(result.memory.window))
        return result.turn.narration

    torch.manual_seed(seed)
    random.seed(seed)  # llama.cpp's sampler draws its seed from `random`
    start = time.perf_counter()
    label = f"{game.name} {mode} seed {seed} {tokens} tokens"
    for fact in game.facts:
        await turn(fact.player, fact.text)
    log.info("%s: %d fact turns done", label, len(game.facts))
    for player, text in game.fillers:
        await turn(player, text)
    log.info("%s: %d ordinary turns done", label, len(game.fillers))
    probe_prompts: dict[str, str] = {}
    probe_deep: dict[str, list] = {}
    for fact in game.facts:
        before = len(prompts)
        deep.clear()
        await turn(fact.player, fact.probe)
        sent = [p for p in prompts[before:] if NOW_HEADER in p and fact.probe in p]
        # one prompt; a second draw (the first reply only played the players) or the model going on after an
        # NPC's roll sends that same prompt again, or it with the reply so far after it
        assert sent and all(p.startswith(sent[0]) for p in sent), f"probe {fact.id}: {len(sent)} different prompts"
        probe_prompts[fact.id], probe_deep[fact.id] = sent[0], deep[-1] if deep else []
    seconds = time.perf_counter() - start
    await services.runner.close()  # a last summary may still be running: let it finish before counting
    narration_prompts = [p for p in prompts if NOW_HEADER in p]
    counts = [backend.count_tokens(p) for p in narration_prompts]
    budget = config.llm.context_tokens - tokens
    how: dict[str, str] = {}
    ranks: dict[str, int | str] = {}
    for fact in game.facts:
        kind, keyword = classify(fact, probe_prompts[fact.id])
        rank, above = rank_of(fact, probe_deep[fact.id])
        how[fact.id] = kind
        ranks[fact.id] = "window" if kind == "recent window" else (rank if rank is not None else "missing")
        log.info("%s: fact %-9s remembered %-3s how %-13s keyword %-10s rank %s", label, fact.id,
                 "yes" if kind != "none" else "no", kind, keyword or "-", ranks[fact.id])
        if kind == "none" or (isinstance(rank, int) and rank > 3):
            for line in above:
                log.info("%s:   %s", label, line)
        copied = sum(1 for n in narrations if find_keyword(fact, n))
        if copied:
            log.info("%s: fact %s: a keyword is in %d of %d narrations", label, fact.id, copied, len(narrations))
    remembered = sum(1 for kind in how.values() if kind != "none")
    mem = config.memory
    used = {"top_k": mem.top_k, "min_score": mem.min_score, "recent_turns": mem.recent_turns,
            "chunk_chars": mem.chunk_chars, "summarize_every": mem.summarize_every}
    figures = {"campaign": game.name, "mode": mode, "seed": seed if mode == "sampled" else None, "tokens": tokens,
               "facts": len(game.facts), "remembered": remembered, "rate": round(remembered / len(game.facts), 3),
               "how": how, "ranks": ranks, "prompt_tokens_max": max(counts), "budget": budget,
               "within_budget": all(c <= budget for c in counts), "turns": len(narrations),
               # from turn 9 on, the window could hold all 8 recent turns: how many fitted
               "window_turns_min": min(windows[8:]), "window_turns_mean": round(sum(windows[8:]) / len(windows[8:]), 2),
               "seconds": round(seconds, 1)}
    log.info("%s: %d of %d facts; ranks %s", label, remembered, len(game.facts), ranks)
    return figures, used


async def main(games: list[Campaign], modes: list[str], tokens: list[int], seeds: list[int], overrides: dict) -> dict:
    for game in games:
        check_script(game)
    runs: list[dict] = []
    out: dict = {"campaigns": [g.name for g in games], "seeds": seeds, "goal_rate": GOAL_RATE,
                 "tokens": tokens[0] if len(tokens) == 1 else tokens, "seed": seeds[0] if len(seeds) == 1 else seeds}
    for size in tokens:
        for game in games:
            for mode in modes:
                for seed in (seeds if mode == "sampled" else seeds[:1]):
                    figures, out["settings"] = await campaign(game, mode, size, seed, overrides)
                    runs.append(figures)
    for mode in modes:  # each mode over every run: the flat figures bench/run shows
        mine = [r for r in runs if r["mode"] == mode]
        facts, remembered = sum(r["facts"] for r in mine), sum(r["remembered"] for r in mine)
        out.update({f"{mode}_facts": facts, f"{mode}_remembered": remembered,
                    f"{mode}_rate": round(remembered / facts, 3),
                    f"{mode}_prompt_tokens_max": max(r["prompt_tokens_max"] for r in mine),
                    f"{mode}_budget": min(r["budget"] for r in mine),
                    f"{mode}_within_budget": all(r["within_budget"] for r in mine)})
    out["runs"] = runs
    return out


if __name__ == "__main__":
    bench_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--campaign", choices=(*CAMPAIGNS, "both"), default="both")
    parser.add_argument("--mode", choices=("greedy", "sampled", "both"), default="both")
    parser.add_argument("--tokens", type=int, nargs="+", default=[64], help="narration lengths (new tokens)")
    parser.add_argument("--seeds", "--seed", type=int, nargs="+", default=[1234],
                        help="seeds of the sampled mode (greedy runs once)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value, e.g. memory.top_k=5 (repeatable)")
    args = parser.parse_args()
    modes = ["greedy", "sampled"] if args.mode == "both" else [args.mode]
    games = list(CAMPAIGNS.values()) if args.campaign == "both" else [CAMPAIGNS[args.campaign]]
    emit(asyncio.run(main(games, modes, args.tokens, args.seeds, parse_sets(args.set))))
