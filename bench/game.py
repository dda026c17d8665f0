"""A scripted 20-turn fight through the real bot (discord.py via SimCord, the SQLite store, the bundled embedder
and tokenizer): three players with sheets, a scripted DM writing markers (damage, healing, arrows, gold, a
condition, a goblin's roll made in place, rolls asked of a player and made with the button), a retry and an
undo along the way. Then the verdicts: every state marker of the story applied exactly once, no raw marker in
any message sent or edited, HP, inventory and gold equal to the ledger kept here by hand; and the figures: a
/dm roll's time from command to posted answer (p50, p95), the party block's tokens per character.

The DM is scripted because the bundled 135M model seldom writes markers; it renders and counts with the real
SmolLM2 tokenizer. Usage: python bench/game.py [--turns 20]. JSON on the last line.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
import tempfile
import time
from pathlib import Path

from common import TEST_MODEL_CACHE, bench_logging, emit, log, percentile, use_paths

use_paths(tests=True)  # SimCord's World and the model stand-in live beside the tests

PLAYERS = {"Aria": 24, "Bram": 30, "Cyra": 18}  # name -> max HP (and starting HP)


def script(turn: int) -> tuple[list[str], list[tuple[str, str, int]], str | None, str | None]:
    """Turn `turn`'s scripted narration: its pieces with markers, the ledger entries they mean (name, what,
    amount), a goblin's roll (the narration goes on after it), and who is asked to roll at its end."""
    target = list(PLAYERS)[turn % 3]
    damage = 2 + turn % 4
    pieces = [f"The goblin's blade finds {target}. [[hp {target} -{damage}]]"]
    ledger = [(target, "hp", -damage)]
    if turn % 4 == 0:
        pieces.append("Cyra's prayer closes a wound. [[hp Aria +3]]")
        ledger.append(("Aria", "hp", 3))
    pieces.append("Bram looses an arrow. [[item Bram -arrow]]")
    ledger.append(("Bram", "arrows", -1))
    if turn % 5 == 0:
        pieces.append("A purse falls from a goblin's belt. [[gold Cyra +7]]")
        ledger.append(("Cyra", "gold", 7))
    if turn == 3:
        pieces.append("The blade was poisoned. [[condition Aria +poisoned]]")
        ledger.append(("Aria", "poisoned", 1))
    if turn == 9:
        pieces.append("The poison fades. [[condition Aria -poisoned]]")
        ledger.append(("Aria", "poisoned", -1))
    goblin = "Another goblin charges. [[roll 1d20+4 goblin attack]]" if turn % 2 else None
    asked = "Cyra" if turn % 6 == 0 else None
    return pieces, ledger, goblin, asked


def replies(turn: int) -> list[str]:
    pieces, _, goblin, asked = script(turn)
    text = " ".join(pieces)
    if asked:
        text += f" Roll to dodge. [[roll 1d20+2 dexterity for {asked}]] and nothing after it is read"
    if goblin:  # the model stops at the roll's end and is asked to go on: two calls
        return [f"{goblin} this is never read", f" The blow lands or misses as the dice say. {text}"]
    return [text]


async def fight(turns: int, db_path: str) -> dict:
    import simcord
    from discord_world import ModelStandIn, World, reply_text

    from bot.app import create_bot
    from bot.config import parse_config
    from engine.memory.embeddings import Embedder
    from engine.textgen.transformers_backend import TransformersBackend

    real = TransformersBackend.load("bundled:smollm2", device="cpu", cache_dir=TEST_MODEL_CACHE)
    model = ModelStandIn(real)
    config = parse_config({"storage": {"path": db_path}, "llm": {"cache_dir": TEST_MODEL_CACHE,
                                                                 "generation": {"max_new_tokens": 400}},
                           "memory": {"summarize_every": 0}, "runner": {"batch_wait_ms": 5},
                           "discord": {"admin_role": "Game Master"}}, "game-bench")
    bot = create_bot(config, text_model=model, embed_model=Embedder.load("bundled:minilm"))
    roll_s: list[float] = []
    ledger = {name: {"hp": hp, "max": hp, "arrows": 20, "gold": 0, "poisoned": 0} for name, hp in PLAYERS.items()}
    async with simcord.run(bot, settle_timeout=300) as env:
        world = await World.create(env)
        cyra = world.guild.add_member(env.create_user("cara"), nick="Cyra")
        players = {"Aria": world.alice, "Bram": world.bob, "Cyra": cyra}
        await world.slash(world.gm, world.table, "dm start", premise="Goblins ambush the caravan at dusk.")
        campaign = await world.store.campaign_for_channel(world.table.id)
        for name, actor in players.items():
            for field, value in (("max_hp", PLAYERS[name]), ("hp", PLAYERS[name]), ("dex", 14)):
                await world.slash(actor, world.table, "dm sheet set", field=field, value=str(value))
            await world.slash(actor, world.table, "dm inventory add", item="arrows", quantity=20)

        async def play(turn: int, command: str = "dm continue") -> None:
            model.replies = replies(turn)
            await world.slash(world.gm, world.table, command)

        for turn in range(1, turns + 1):
            for name, actor in players.items():
                await actor.send(world.table, f"{name} fights on, turn {turn}.")
                began = time.perf_counter()
                rolled = await world.slash(actor, world.table, "dm roll", dice="1d20+dex", reason="Attack")
                roll_s.append(time.perf_counter() - began)
                assert reply_text(rolled).startswith(f"🎲 {name}, Attack: 1d20 ("), reply_text(rolled)
            await play(turn)
            if turn == 7:  # retold with the same markers: they must count once
                await play(turn, "dm retry")
            if turn == 14:  # undone, then narrated again: once
                await world.slash(world.gm, world.table, "dm undo")
                await play(turn)
            for name, what, change in script(turn)[1]:
                entry = ledger[name]
                entry[what] = max(0, min(entry["max"], entry[what] + change)) if what == "hp" else entry[what] + change
            if script(turn)[3]:  # the asked player presses the Roll button
                asked = next(m for m in reversed(world.bot_messages(world.table)) if m.content.startswith("🎲 Cyra, roll"))
                pressed = await world.click(cyra, asked, "Roll for Cyra")
                assert not pressed.ephemeral, reply_text(pressed)
        turns_kept = await world.store.recent_turns(campaign.id, turns + 5)
        sheets = {json.loads(d)["name"]: json.loads(d) for d in (await world.store.sheets(campaign.id)).values()}
        raw = [t for t in world.sent_texts() if "[[" in t or "]]" in t]
        prompt = model.calls[-1][0]
        party = prompt.split("The party:\n", 1)[1].split("\n\n", 1)[0].splitlines()
        party_tokens = [real.count_tokens(line) for line in party]
    planned = sum(len(script(t)[1]) for t in range(1, turns + 1))
    applied = sum(len((t.effects or {}).get("applied", [])) for t in turns_kept)
    got = {name: {"hp": s["hp"], "arrows": s["inventory"].get("arrows", 0), "gold": s["gold"],
                  "poisoned": int("poisoned" in s["conditions"])} for name, s in sheets.items()}
    want = {name: {k: v for k, v in entry.items() if k != "max"} for name, entry in ledger.items()}
    npc_rolls = sum(len(re.findall(r"\[rolled 1d20\+4 for goblin attack = \d+\]", t.narration)) for t in turns_kept)
    return {
        "turns": len(turns_kept), "players": len(PLAYERS), "state_markers": planned, "applied": applied,
        "applied_exactly_once": applied == planned, "raw_markers_posted": len(raw),
        "ledger_match": got == want, "sheets": got, "expected": want,
        "npc_rolls_in_place": npc_rolls, "npc_rolls_expected": sum(1 for t in range(1, turns + 1) if t % 2),
        "roll_p50_s": round(percentile(roll_s, 50), 4), "roll_p95_s": round(percentile(roll_s, 95), 4),
        "rolls": len(roll_s), "party_tokens_per_character": round(sum(party_tokens) / len(party_tokens), 1),
        "party_tokens_max": max(party_tokens), "model_calls": len(model.calls),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args()
    bench_logging()
    logging.getLogger("simcord").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="dm-game-") as folder:
        figures = asyncio.run(fight(args.turns, str(Path(folder) / "dm.sqlite3")))
    log.info("game: %s", figures)
    emit(figures)
    ok = figures["applied_exactly_once"] and figures["ledger_match"] and not figures["raw_markers_posted"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
