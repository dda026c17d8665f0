"""/dm memory: show (paged), add (pin a fact), forget, reset (after a confirm button)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import discord
from discord import app_commands

from bot.services import Services
from cogs.common import LIST_LIMIT, MESSAGE_LIMIT, begin, reply, shorten
from cogs.errors import friendly
from engine.errors import EngineError, Unavailable
from engine.records import Memory
from engine.translation import Translation, opening
from engine.table.context import PromptMemory

log = logging.getLogger(__name__)
PAGE_SIZE = 10
LINE_CHARS = 150
OPENING_CHARS = 2 * LINE_CHARS  # of a memory, what goes to the translator: more than a line shows
ICONS = {"fact": "📌", "summary": "🧠", "exact": "📝"}


def memory_line(memory: Memory, text: str | None = None) -> str:
    """One memory as listed; `text` is what it says in the players' language (its stored text if None)."""
    icon = "📌" if memory.pinned else ICONS.get(memory.kind, "•")
    turns = f" (turns {memory.turn_from}-{memory.turn_to})" if memory.kind == "summary" else ""
    text = memory.shown if text is None else text
    # escaped before it is shortened: escaping doubles markdown-heavy text (`*_~|`)
    return f"{icon} `#{memory.id}`{turns} {shorten(discord.utils.escape_markdown(text), LINE_CHARS)}"


def page_count(memories: list[Memory]) -> int:
    return max(1, -(-len(memories) // PAGE_SIZE))


def page_memories(memories: list[Memory], page: int) -> list[Memory]:
    page = min(max(page, 0), page_count(memories) - 1)
    return memories[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]


def memory_page(memories: list[Memory], page: int, texts: list[str] | None = None, note: str = "") -> str:
    """A page of memories; `texts` are the page's memories in the players' language, `note` a last line
    that is never cut."""
    pages = page_count(memories)
    page = min(max(page, 0), pages - 1)
    shown = page_memories(memories, page)
    lines = [memory_line(m, t) for m, t in zip(shown, texts or [None] * len(shown))]
    head = f"**What the DM remembers** ({len(memories)}; page {page + 1}/{pages})"
    if not lines:
        return "The DM remembers nothing yet."
    note = f"\n-# {shorten(note, 300)}" if note else ""
    return shorten("\n".join([head, *lines]), MESSAGE_LIMIT - len(note)) + note


@dataclass(frozen=True)
class PlayersLanguage:
    """Pages of memories in the players' language: stored in the model's, translated on the way out
    (only the page shown; the translation cache serves a page shown before)."""
    translation: Translation
    language: str
    glossary: dict[str, str]

    async def page(self, memories: list[Memory], page: int, *, cached_only: bool = False) -> str | None:
        """The page translated, or stored with a note when the translator fails; with `cached_only`,
        None unless the cache holds all of it (then nothing is asked of the translator)."""
        shown = page_memories(memories, page)
        sources = [opening(m.text, OPENING_CHARS) for m in shown]
        try:
            texts = await self.translation.to_players_all(sources, self.language, self.glossary,
                                                          cached_only=cached_only)
        except Unavailable as exc:  # the stored text still says what the DM remembers
            log.warning("memories shown untranslated: %s", exc)
            return memory_page(memories, page, note=self.translation.untranslated_note(exc))
        if texts is None:
            return None
        return memory_page(memories, page, [_in_players_language(m, source, text)
                                            for m, source, text in zip(shown, sources, texts)])


def _in_players_language(memory: Memory, source: str, text: str) -> str:
    text = text if len(source) >= len(memory.text.rstrip()) else text.rstrip() + " …"  # only its opening went
    return f"{memory.speaker}: {text}" if memory.speaker else text


def last_memory_text(turn_number: int, remembered: PromptMemory) -> str:
    """What a turn's prompt held from memory, within one message: long entries are shortened."""
    lines = [discord.utils.escape_markdown(shorten(line, 220))
             for line in remembered.lines(turn_number)]
    lines[0] = f"**{lines[0]}**"
    lines.append("_Missing something? `/dm memory add` pins a fact the DM always remembers._")
    return shorten("\n".join(lines))


class MemoryPages(discord.ui.View):
    def __init__(self, memories: list[Memory], owner_id: int, language: PlayersLanguage | None = None) -> None:
        super().__init__(timeout=300)
        self.memories, self.owner_id, self.page, self.language = memories, owner_id, 0, language
        self.pages = page_count(memories)
        self.content = ""  # what the message shows now
        self._refresh()

    def _refresh(self) -> None:
        self.previous.disabled = self.page == 0
        self.next.disabled = self.page >= self.pages - 1

    async def text(self, page: int, *, cached_only: bool = False) -> str | None:
        if self.language is None:
            return memory_page(self.memories, page)
        return await self.language.page(self.memories, page, cached_only=cached_only)

    async def _turn(self, interaction: discord.Interaction, step: int) -> None:
        self.page = min(max(self.page + step, 0), self.pages - 1)
        self._refresh()
        ready = await self.text(self.page, cached_only=True)
        if ready is not None:
            self.content = ready
            await interaction.response.edit_message(content=ready, view=self)
            return
        # The translator may take longer than the 3 s Discord waits for an answer: the message says
        # the page is coming (the buttons wait), and shows it when it is translated.
        self.previous.disabled = self.next.disabled = True
        waiting = shorten(self.content, LIST_LIMIT) + f"\n-# 🌐 Translating page {self.page + 1}…"
        await interaction.response.edit_message(content=waiting, view=self)
        self.content = await self.text(self.page) or ""
        self._refresh()
        try:
            await interaction.edit_original_response(content=self.content, view=self)
        except discord.HTTPException as exc:  # the message is gone, or the token expired: nothing to show it in
            log.info("memory page not shown: %s", exc)

    @discord.ui.button(label="Previous", style=discord.ButtonStyle.secondary)
    async def previous(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self._turn(interaction, -1)

    @discord.ui.button(label="Next", style=discord.ButtonStyle.secondary)
    async def next(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self._turn(interaction, 1)


class ConfirmReset(discord.ui.View):
    def __init__(self, services: Services, campaign_id: int, channel_id: int, owner_id: int) -> None:
        super().__init__(timeout=60)
        self.services, self.campaign_id, self.channel_id, self.owner_id = services, campaign_id, channel_id, owner_id

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.owner_id:
            await reply(interaction, "🔒 Only who asked for the reset can confirm it.")
            return False
        return True

    @discord.ui.button(label="Forget everything", style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.stop()
        try:
            self.services.runner.cancel_channel(self.channel_id)  # no turn in flight writes into the wiped memory
            count = await self.services.edits.reset_memory(self.campaign_id)
            text = f"🧹 The DM forgot {count} memories of this campaign."
        except EngineError as exc:
            text = friendly(exc)
        await interaction.response.edit_message(content=text, view=None)

    @discord.ui.button(label="Keep them", style=discord.ButtonStyle.secondary)
    async def keep(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.stop()
        await interaction.response.edit_message(content="Nothing was forgotten.", view=None)


class MemoryCommands(app_commands.Group):
    def __init__(self, services: Services) -> None:
        super().__init__(name="memory", description="What the DM remembers of this campaign")
        self.services = services

    @app_commands.command(description="List what the DM remembers, pinned facts first")
    async def show(self, interaction: discord.Interaction) -> None:
        campaign = await begin(interaction, self.services)
        memories = await self.services.store.memories(campaign.id)
        translation = self.services.translation
        language = (PlayersLanguage(translation, campaign.language, await self.services.store.glossary(campaign.id))
                    if memories and translation.outside_turns(campaign.language) else None)
        view = MemoryPages(memories, interaction.user.id, language)
        view.content = await view.text(0) or ""
        await reply(interaction, view.content, view=view)

    @app_commands.command(description="What the last turn's prompt held from memory")
    async def last(self, interaction: discord.Interaction) -> None:
        campaign = await begin(interaction, self.services)
        last = await self.services.edits.last_memory(campaign.id)
        await reply(interaction, last_memory_text(*last) if last else "No turn has been narrated yet.")

    @app_commands.command(description="Pin a fact the DM always remembers")
    @app_commands.describe(fact="The fact, e.g. 'The cellar password is blue heron'")
    async def add(self, interaction: discord.Interaction, fact: str) -> None:
        campaign = await begin(interaction, self.services, admin=True)
        memory, note = await self.services.edits.pin_fact(campaign, fact)
        kept = "" if memory.text == fact.strip() else f": {discord.utils.escape_markdown(memory.text[:300])}"
        await reply(interaction, f"📌 Pinned `#{memory.id}`{kept}" + (f"\n{note}" if note else ""))

    @app_commands.command(description="Delete one memory by its number")
    @app_commands.describe(memory_id="The memory's number from /dm memory show")
    async def forget(self, interaction: discord.Interaction, memory_id: int) -> None:
        campaign = await begin(interaction, self.services, admin=True)
        await self.services.edits.forget(campaign, memory_id)
        await reply(interaction, f"🗑️ Forgot `#{memory_id}`.")

    @app_commands.command(description="Wipe this campaign's memories (asks first)")
    async def reset(self, interaction: discord.Interaction) -> None:
        campaign = await begin(interaction, self.services, admin=True)
        count = await self.services.store.memory_count(campaign.id)
        view = ConfirmReset(self.services, campaign.id, campaign.channel_id, interaction.user.id)
        await reply(interaction, f"⚠️ Forget all {count} memories of **{campaign.name}**, pinned facts too?",
                    view=view)
