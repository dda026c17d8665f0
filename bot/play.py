"""Terminal play: the same engine and database as the Discord bot, offline, one player at a keyboard.

Every line you type is your character's action and the DM answers it; commands start with '/'.
"""
from __future__ import annotations

import asyncio
import re
import sys
import zlib
from typing import TextIO

from bot.config import Config
from bot.services import Services, build_services
from engine.errors import EngineError
from engine.game import amount, roll as roll_dice
from engine.jobs import Job
from engine.records import Campaign

HELP = """Commands:
  (any text)      your character's action; the DM narrates what happens
  /continue [x]   let the DM go on (optionally with a direction for the DM)
  /roll <dice> [for <reason>]   roll dice (1d20+5, 4d6kh3, 1d20 adv); the DM narrates the result next turn
  /roll           make the roll the DM asked you for
  /sheet [<field> <value>]      show your character sheet, or set a field (hp, max_hp, ac, dex, skills...)
  /hp <change>    -5, +3 or dice such as -2d6;  /gold <change>;  /inv add|remove <item> [quantity]
  /retry          narrate the last turn anew
  /undo           take back the last turn (its actions return)
  /memory         list what the DM remembers
  /memory last    what the last turn's prompt held from memory, and which recent turns fitted
  /pin <fact>     make the DM always remember a fact
  /card <keys> = <text>   a story card: the DM is given <text> when one of the keys is mentioned
  /cards          list the story cards; /card remove <id> removes one
  /summarise      summarise the story so far into a memory now
  /recap          the story so far in a few sentences
  /help           this list
  /quit           leave (the campaign is saved)"""

DEFAULT_PREMISE = "A fantasy adventure that begins in a small tavern at the edge of a dark forest."


def terminal_channel_id(name: str) -> int:
    """Terminal campaigns live beside Discord ones; negative ids never collide with Discord's."""
    return -(zlib.crc32(name.encode()) + 1)


class TerminalGame:
    """A campaign played in the terminal: lines are actions, /commands do what /dm commands do on Discord."""
    def __init__(self, services: Services, campaign: Campaign, player: str, out: TextIO) -> None:
        self.services, self.campaign, self.player, self.out = services, campaign, player, out

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    async def run_job(self, kind: str, **payload) -> None:
        handle = self.services.runner.submit(Job(self.campaign.id, self.campaign.channel_id, kind, payload=payload))
        narrating = kind in ("turn", "retry")
        if narrating:
            self.out.write("DM: ")
        live = narrating and self.services.translation.live(
            self.campaign.language, await self.services.store.glossary(self.campaign.id))
        shown = ""
        async for text in handle.updates():
            if live:
                text = await live.update(text)
            self.out.write(text[len(shown):] if text.startswith(shown) else "\n" + text)
            self.out.flush()
            shown = text
        result = await handle.result()
        if narrating:  # what the story keeps: translated, whole sentences, the DM's voice only
            posted = result.turn.posted
            if posted.startswith(shown):
                self.out.write(posted[len(shown):])
            elif posted.strip() != shown.strip():  # the stream showed the model's raw words
                self.out.write(f"\n\n(kept in the story as:)\n{posted}")
            effects = result.turn.effects or {}
            for line in effects.get("lines", []):  # what the DM's markers did to the characters
                self.say(f"\n📜 {line}")
            for request in effects.get("requests", []):
                why = f" for {request['reason']}" if request["reason"] else ""
                self.say(f"\n🎲 {request['name']}, roll {request['expression']}{why}: type /roll")
            for note in result.notes:
                self.say(f"\n({note})")
        if kind == "summary":
            self.say(result or "(nothing new to summarise)")
        elif kind == "recap":
            self.say(f"📖 {result}")
        elif kind == "undo":
            self.say(f"(turn {result.number} undone)" if result else "(nothing to undo)")
        else:
            self.say()

    async def sheet_command(self, name: str, rest: str) -> None:
        """/sheet, /hp, /gold and /inv on the terminal player's sheet (engine/game/sheets.py checks them)."""
        edits, campaign = self.services.edits, self.campaign
        if name == "/sheet" and not rest:
            sheet = await edits.sheet(campaign, 0)
            self.say(sheet.party_line() if sheet else "(no sheet yet: /sheet <field> <value> starts one)")
            return
        if name == "/sheet":
            field, _, value = rest.partition(" ")
            how = lambda sheet: (sheet.with_field(field, value), f"{field} set")  # noqa: E731
        elif name == "/hp":
            change = amount(rest)
            how = lambda sheet: sheet.with_hp(change)  # noqa: E731
        elif name == "/gold":
            change = amount(rest) if re.fullmatch(r"[+-]?\d{1,10}", rest) else None
            if change is None:
                self.say("(usage: /gold <+N or -N>)")
                return
            how = lambda sheet: sheet.with_gold(change)  # noqa: E731
        else:
            verb, _, item = rest.partition(" ")
            words = item.split()
            quantity = int(words.pop()) if len(words) > 1 and words[-1].isdigit() else 1
            if verb not in ("add", "remove") or not words:
                self.say("(usage: /inv add|remove <item> [quantity])")
                return
            how = lambda sheet: sheet.with_item(" ".join(words), quantity if verb == "add" else -quantity)  # noqa: E731
        _, said = await edits.change_sheet(campaign, 0, self.player, how)
        self.say(f"({said})")

    async def asked_roll(self) -> None:
        """/roll alone makes the roll the DM asked the player for in the last turn."""
        turn = await self.services.store.last_turn(self.campaign.id)
        requests = (turn.effects or {}).get("requests", []) if turn else []
        open_ = [i for i, r in enumerate(requests) if r["author"] == 0 and "rolled" not in r]
        if not open_:
            self.say("(the DM asked for no roll: /roll <dice> [for <reason>], e.g. /roll 1d20+5 for stealth)")
            return
        request, rolled = await self.services.edits.answer_roll(self.campaign, turn.id, open_[0], 0, self.player)
        why = f", {request['reason']}" if request["reason"] else ""
        self.say(f"🎲 {self.player}{why}: {rolled.shown}")

    async def command(self, line: str) -> bool:
        """Handle one input line; False means quit."""
        name, _, rest = line.partition(" ")
        store, campaign = self.services.store, self.campaign
        if not line.startswith("/"):
            _, note = await self.services.edits.add_action(campaign.id, 0, self.player, line)
            if note:
                self.say(f"(note: {note})")
            await self.run_job("turn")
        elif name == "/quit":
            return False
        elif name == "/roll" and not rest.strip():  # the roll the DM asked for
            await self.asked_roll()
        elif name == "/roll":
            dice, _, reason = rest.partition(" for ")
            rolled = roll_dice(dice, reason=reason)
            await self.services.edits.add_roll(campaign, 0, self.player, rolled, reason)
            self.say(f"🎲 {self.player}{', ' + reason.strip() if reason.strip() else ''}: {rolled.shown}")
        elif name == "/continue":
            await self.run_job("turn", text=rest)
        elif name in ("/sheet", "/hp", "/gold", "/inv"):
            await self.sheet_command(name, rest.strip())
        elif name == "/retry":
            await self.run_job("retry")
        elif name == "/summarise":
            await self.run_job("summary")
        elif name == "/recap":
            await self.run_job("recap")
        elif name == "/undo":
            await self.run_job("undo")
        elif name == "/memory" and rest.strip() == "last":
            last = await self.services.edits.last_memory(campaign.id)
            self.say("\n".join(last[1].lines(last[0])) if last else "(no turn has been narrated yet)")
        elif name == "/memory":
            memories = await store.memories(campaign.id)
            for m in memories:
                self.say(f"  #{m.id} [{'pinned' if m.pinned else m.kind}] {m.shown}")
            self.say(f"({len(memories)} memories)")
        elif name == "/pin":
            if not rest.strip():
                self.say("(usage: /pin <fact>)")
            else:
                memory, note = await self.services.edits.pin_fact(campaign, rest)
                self.say(f"(pinned #{memory.id}: {memory.text})" + (f"\n({note})" if note else ""))
        elif name == "/cards":
            for card in await store.cards(campaign.id):
                self.say(f"  #{card.id} [{', '.join(card.keys)}] {card.text}")
        elif name == "/card" and rest.startswith("remove "):
            if rest[7:].strip().isdigit():
                await self.services.edits.remove_card(campaign, int(rest[7:]))
                self.say("(card removed)")
            else:
                self.say("(usage: /card remove <id>, an id /cards shows)")
        elif name == "/card":
            keys, equals, text = rest.partition("=")
            if not equals:
                self.say("(usage: /card <keys, separated by commas> = <what the DM should know>)")
            else:
                card, note = await self.services.edits.add_card(campaign, keys, text)
                self.say(f"(card #{card.id} [{', '.join(card.keys)}]: {card.text})" + (f"\n({note})" if note else ""))
        else:
            self.say(HELP)
        return True


async def open_campaign(services: Services, name: str, premise: str | None,
                        language: str | None = None) -> Campaign:
    store = services.store
    if language:
        services.translation.check_language(language)
    campaign = await store.campaign_for_channel(terminal_channel_id(name))
    if campaign is None:
        campaign, _ = await services.edits.start_campaign(
            terminal_channel_id(name), name, premise or DEFAULT_PREMISE,
            (language or services.translation.model_language).lower())
    else:
        if language:
            campaign = await services.edits.set_language(campaign, language.lower())
        if premise:
            campaign, _ = await services.edits.set_campaign_text(campaign, "premise", premise)
    return campaign


async def play(config: Config, name: str, player: str, premise: str | None,
               stdin: TextIO = sys.stdin, out: TextIO = sys.stdout, *, language: str | None = None) -> int:
    def progress(message: str) -> None:
        out.write(f"[{message}]\n")
        out.flush()

    if language and not re.fullmatch(r"[A-Za-z]{2,8}", language):  # before minutes of model loading
        raise EngineError(f"{language!r} is not a language code such as en or ru")
    services = await build_services(config, progress)
    try:
        campaign = await open_campaign(services, name, premise, language)
        game = TerminalGame(services, campaign, player, out)
        turns = await services.store.turn_count(campaign.id)
        game.say(f"Campaign {campaign.name!r} ({turns} turns so far). {campaign.premise}")
        game.say("Type what your character does; /help lists commands.")
        loop = asyncio.get_running_loop()
        while True:
            out.write("> ")
            out.flush()
            line = await loop.run_in_executor(None, stdin.readline)
            if not line:  # end of input
                break
            line = line.strip()
            if not line:
                continue
            try:
                if not await game.command(line):
                    break
            except EngineError as exc:
                game.say(f"\n(the DM cannot do that: {exc})")
        game.say("(saved; goodbye)")
    finally:
        await services.close()
    return 0
