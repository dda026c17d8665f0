"""Long-term memory: do facts the players set up early come back thirty turns later?

A scripted campaign is played through the whole engine (bundled models, SQLite in a temp folder,
the config's memory settings): fact turns, each planting one concrete fact with rare keywords;
then at least 30 filler turns that mention none of them; then one probe turn per fact that touches
it again in other words. For each probe, the exact narration prompt the engine sent to the model is
searched for the fact's keywords outside the "What the players do now:" section: found under
"Things to remember:" is recall by memory, under "The story so far:" the recent window. Every
narration prompt's token count is checked against the budget (context_tokens - max_new_tokens).
Greedy decoding, and the shipped sampling settings with a fixed seed.
Usage: python bench/memory.py [--mode greedy|sampled|both] [--tokens 64] [--seed 1234]
                              [--set memory.top_k=5 ...]
"""
from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
import tomllib
from dataclasses import dataclass

from common import MODEL_CACHE, bench_logging, emit, log

from bot.config import parse_config
from bot.services import build_services
from engine.jobs.job import Job
from engine.table.prompt import INSTRUCTIONS

GOAL_RATE = 0.9  # the goal: 9 of 10 facts (here 11 of 12)
PREMISE = ("The free port of Saltmere on a storm-wracked coast, where four companions seek their fortune "
           "and old debts come due.")
PLAYERS = {"Bram": 1, "Ilsa": 2, "Kel": 3, "Cira": 4}
MEMORY_HEADER, STORY_HEADER, NOW_HEADER = "Things to remember:", "The story so far:", "What the players do now:"


@dataclass(frozen=True)
class Fact:
    id: str
    player: str
    text: str  # the action that plants the fact
    keywords: tuple[str, ...]  # case-insensitive, whole words
    probe: str  # the action that touches it again, in other words


FACTS = [
    Fact("ship", "Bram", "I name my ship the Marigold and paint the name on her bow in gold letters.",
         ("Marigold",), "I ask the harbourmaster whether my vessel is ready to sail."),
    Fact("password", "Ilsa", "I whisper to the others that the password to the temple vault is 'copper wren'.",
         ("copper wren", "wren"), "At the temple vault door I speak the secret word I was told."),
    Fact("debt", "Kel", "I owe the smith Tolda thirty gold crowns for my new sword.",
         ("Tolda", "thirty gold"), "I visit the blacksmith who forged my blade to settle what I owe her."),
    Fact("god", "Cira", "I pray to our god Vhal, the drowned one, and pour salt into the waves.",
         ("Vhal",), "I kneel at the shore and pray to the deity our people worship."),
    Fact("horse", "Bram", "I buy a grey mare at the market and call her Thistlewick.",
         ("Thistlewick",), "I saddle my horse and whisper her name to calm her."),
    Fact("buried", "Ilsa", "I bury my mother's silver locket under the split oak behind the Oxbow Mill.",
         ("Oxbow", "locket"), "I go back to dig up the keepsake I hid in the ground."),
    Fact("allergy", "Kel", "I warn everyone that I am deathly allergic to saffron; it makes my throat close.",
         ("saffron",), "The cook offers me a spiced stew, and I ask whether it holds anything that could harm me."),
    Fact("promise", "Cira", "I swear to the orphan Pell that I will bring back his father's brass lantern.",
         ("Pell", "lantern"), "I remember the oath I made to the little boy and look for what I promised him."),
    Fact("number", "Bram", "Our map says the hidden cave lies exactly 417 paces north of the standing stone.",
         ("417",), "I count my steps from the old marker toward the secret cave."),
    Fact("sister", "Ilsa", "My sister Odrienne was carried off by the slavers of Kesh last winter.",
         ("Odrienne", "Kesh"), "I ask the freed prisoners whether anyone has seen my missing sibling."),
    Fact("hiding", "Kel", "I hide the stolen crown inside a hollow wheel of goat cheese in the cellar.",
         ("cheese",), "I check that the royal treasure I took is still safe in its hiding place."),
    Fact("familiar", "Cira", "My familiar is a one-eyed raven named Quillon who rides on my shoulder.",
         ("Quillon", "raven"), "I call my animal companion back to me with a soft whistle."),
]

FILLERS = [
    ("Bram", "I walk down to the docks and watch the fishermen mend their nets."),
    ("Ilsa", "I buy a loaf of dark bread and a jug of cider at the corner stall."),
    ("Kel", "I haggle with a cloth merchant over the price of a warm wool cloak."),
    ("Cira", "I look up at the sky and guess whether the rain will hold off until evening."),
    ("Bram", "I draw my cudgel and chase the rats out of the tavern's storeroom."),
    ("Ilsa", "I sit by the fire and sharpen my knives one by one."),
    ("Kel", "I ask the innkeeper what news has come from the capital this week."),
    ("Cira", "I help an old woman carry her baskets of apples up the hill."),
    ("Bram", "I play a game of dice with two sailors and lose a few coppers."),
    ("Ilsa", "I climb the bell tower to look out over the rooftops of the town."),
    ("Kel", "I stretch my legs with a long walk along the sea wall."),
    ("Cira", "I trade a song for a bowl of fish soup at the harbour kitchen."),
    ("Bram", "I patch the hole in my boot with a strip of leather."),
    ("Ilsa", "I follow a stray cat through the narrow alleys of the market."),
    ("Kel", "I challenge a dockworker to an arm-wrestling match."),
    ("Cira", "I wash my travelling clothes in the stream behind the inn."),
    ("Bram", "I listen to a street preacher warning about the coming storms."),
    ("Ilsa", "I count the coins left in my purse and frown."),
    ("Kel", "I kick a giant rat that leaps at me from a pile of barrels."),
    ("Cira", "I gather herbs in the meadow outside the town gate."),
    ("Bram", "I ask a fisherman where the best oysters are sold."),
    ("Ilsa", "I take shelter under an awning while a sudden squall passes."),
    ("Kel", "I help the town guard push a stuck cart out of the mud."),
    ("Cira", "I read the notices nailed to the board outside the town hall."),
    ("Bram", "I eat a plate of fried eels and wash it down with ale."),
    ("Ilsa", "I bargain with a tinker for a new set of lockpicks."),
    ("Kel", "I watch the ships come in as the fog rolls over the water."),
    ("Cira", "I light a candle in the window of our rented room."),
    ("Bram", "I chop firewood for the innkeeper in exchange for breakfast."),
    ("Ilsa", "I wander through the fish market and hold my nose."),
    ("Kel", "I spar with a wooden practice sword in the inn's courtyard."),
    ("Cira", "I ask a child selling flowers where she lives."),
]


def keyword_pattern(keyword: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(keyword)}(?!\w)", re.IGNORECASE)


def find_keyword(fact: Fact, text: str) -> str | None:
    for keyword in fact.keywords:
        if keyword_pattern(keyword).search(text):
            return keyword
    return None


def check_script() -> None:
    """A fact only counts through words the probe itself (and nothing else in the script) does not hold."""
    assert len(FACTS) >= 10 and len(FILLERS) >= 30 and len({f.player for f in FACTS}) >= 4
    assert len({f.id for f in FACTS}) == len(FACTS)
    for fact in FACTS:
        assert find_keyword(fact, fact.text), f"fact {fact.id} holds none of its keywords"
        assert not find_keyword(fact, fact.probe), f"probe {fact.id} holds its fact's keyword"
        assert not find_keyword(fact, PREMISE + "\n" + INSTRUCTIONS), f"premise holds {fact.id}'s keyword"
        for _, text in FILLERS:
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


async def campaign(mode: str, tokens: int, seed: int, overrides: dict) -> tuple[dict, dict]:
    folder = tempfile.mkdtemp(prefix=f"bench-memory-{mode}-")
    config = parse_config(merge({"storage": {"path": f"{folder}/dm.sqlite3"}, "llm": {"cache_dir": MODEL_CACHE}},
                                overrides), "bench")
    services = await build_services(config, log.info)
    try:
        return await play(services, config, mode, tokens, seed)
    finally:  # also when a turn fails: the model workers must not keep the process alive
        await services.close()


async def play(services, config, mode: str, tokens: int, seed: int) -> tuple[dict, dict]:
    import torch

    backend = services.backend
    prompts: list[str] = []
    original = backend.generate_batch

    def recording(requests, on_token, should_stop):  # keep the exact prompts the engine sent
        prompts.extend(r.text for r in requests)
        return original(requests, on_token, should_stop)

    backend.generate_batch = recording
    settings = {"max_new_tokens": tokens, "min_new_tokens": tokens}
    if mode == "greedy":
        settings["do_sample"] = False
    store, edits = services.store, services.edits
    channel = 1
    game = await store.create_campaign(channel, f"memory-{mode}", PREMISE, settings=settings)
    narrations: list[str] = []
    windows: list[int] = []  # how many recent turns each prompt held after the budget

    async def turn(player: str, text: str) -> str:
        await edits.add_action(game.id, PLAYERS[player], player, text)
        handle = services.runner.submit(Job(game.id, channel, "turn"))
        result = await handle.result()
        narrations.append(result.turn.narration)
        windows.append(len(result.memory.window))
        return result.turn.narration

    torch.manual_seed(seed)
    start = time.perf_counter()
    for fact in FACTS:
        await turn(fact.player, fact.text)
    log.info("%s: %d fact turns done", mode, len(FACTS))
    for player, text in FILLERS:
        await turn(player, text)
    log.info("%s: %d filler turns done", mode, len(FILLERS))
    probe_prompts: dict[str, str] = {}
    for fact in FACTS:
        before = len(prompts)
        await turn(fact.player, fact.probe)
        sent = [p for p in prompts[before:] if NOW_HEADER in p and fact.probe in p]
        assert len(sent) == 1, f"probe {fact.id}: {len(sent)} narration prompts"
        probe_prompts[fact.id] = sent[0]
    seconds = time.perf_counter() - start
    await services.runner.close()  # a last summary may still be running: let it finish before counting
    narration_prompts = [p for p in prompts if NOW_HEADER in p]
    counts = [backend.count_tokens(p) for p in narration_prompts]
    budget = config.llm.context_tokens - tokens
    how: dict[str, str] = {}
    for fact in FACTS:
        kind, keyword = classify(fact, probe_prompts[fact.id])
        how[fact.id] = kind
        log.info("%s: fact %-9s remembered %-3s how %-13s keyword %s", mode, fact.id,
                 "yes" if kind != "none" else "no", kind, keyword or "-")
        copied = sum(1 for n in narrations if find_keyword(fact, n))
        if copied:
            log.info("%s: fact %s: a keyword is in %d of %d narrations", mode, fact.id, copied, len(narrations))
    remembered = sum(1 for kind in how.values() if kind != "none")
    mem = config.memory
    used = {"top_k": mem.top_k, "min_score": mem.min_score, "recent_turns": mem.recent_turns,
            "chunk_chars": mem.chunk_chars, "summarize_every": mem.summarize_every}
    figures = {"facts": len(FACTS), "remembered": remembered, "rate": round(remembered / len(FACTS), 3),
               "how": how, "prompt_tokens_max": max(counts), "budget": budget,
               "within_budget": all(c <= budget for c in counts), "turns": len(narrations),
               # from turn 9 on, the window could hold all 8 recent turns: how many fitted
               "window_turns_min": min(windows[8:]), "window_turns_mean": round(sum(windows[8:]) / len(windows[8:]), 2),
               "seconds": round(seconds, 1)}
    return {f"{mode}_{k}": v for k, v in figures.items()}, used


async def main(modes: list[str], tokens: int, seed: int, overrides: dict) -> dict:
    check_script()
    out: dict = {"tokens": tokens, "goal_rate": GOAL_RATE}
    for mode in modes:
        figures, used = await campaign(mode, tokens, seed, overrides)
        out.update(figures)
        out["settings"] = used
    return out


if __name__ == "__main__":
    bench_logging()
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("greedy", "sampled", "both"), default="both")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value, e.g. memory.top_k=5 (repeatable)")
    args = parser.parse_args()
    modes = ["greedy", "sampled"] if args.mode == "both" else [args.mode]
    emit(asyncio.run(main(modes, args.tokens, args.seed, parse_sets(args.set))))
