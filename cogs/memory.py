"""/dm memory: show (paged), add (pin a fact), forget, reset (after a confirm button)."""
from __future__ import annotations

import discord
from discord import app_commands

from bot.services import Services
from cogs.common import campaign_here, require_admin, shorten
from cogs.errors import NO_PINGS, friendly
from engine.errors import BadInput, EngineError
from engine.records import Memory
from engine.turn_context import PromptMemory

PAGE_SIZE = 10
ICONS = {"fact": "📌", "summary": "🧠", "exact": "📝"}


def memory_line(memory: Memory) -> str:
    icon = "📌" if memory.pinned else ICONS.get(memory.kind, "•")
    turns = f" (turns {memory.turn_from}-{memory.turn_to})" if memory.kind == "summary" else ""
    # escaped before it is shortened: escaping doubles markdown-heavy text (`*_~|`)
    return f"{icon} `#{memory.id}`{turns} {shorten(discord.utils.escape_markdown(memory.shown), 150)}"


def memory_page(memories: list[Memory], page: int) -> str:
    pages = max(1, -(-len(memories) // PAGE_SIZE))
    page = min(max(page, 0), pages - 1)
    lines = [memory_line(m) for m in memories[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]]
    head = f"**What the DM remembers** ({len(memories)}; page {page + 1}/{pages})"
    return shorten("\n".join([head, *lines]), 2000) if lines else "The DM remembers nothing yet."


def last_memory_text(turn_number: int, remembered: PromptMemory) -> str:
    """What a turn's prompt held from memory, within one message: long entries are shortened."""
    lines = [discord.utils.escape_markdown(shorten(line, 220))
             for line in remembered.lines(turn_number)]
    lines[0] = f"**{lines[0]}**"
    lines.append("_Missing something? `/dm memory add` pins a fact the DM always remembers._")
    text = "\n".join(lines)
    return shorten(text, 2000)


class MemoryPages(discord.ui.View):
    def __init__(self, memories: list[Memory], owner_id: int) -> None:
        super().__init__(timeout=300)
        self.memories, self.owner_id, self.page = memories, owner_id, 0
        self.pages = max(1, -(-len(memories) // PAGE_SIZE))
        self._refresh()

    def _refresh(self) -> None:
        self.previous.disabled = self.page == 0
        self.next.disabled = self.page >= self.pages - 1

    async def _turn(self, interaction: discord.Interaction, step: int) -> None:
        self.page += step
        self._refresh()
        await interaction.response.edit_message(content=memory_page(self.memories, self.page), view=self,
                                                allowed_mentions=NO_PINGS)

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
            await interaction.response.send_message("🔒 Only who asked for the reset can confirm it.",
                                                    ephemeral=True, allowed_mentions=NO_PINGS)
            return False
        return True

    @discord.ui.button(label="Forget everything", style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.stop()
        try:
            self.services.runner.cancel_channel(self.channel_id)  # no turn in flight writes into the wiped memory
            count = await self.services.store.reset_memory(self.campaign_id)
            text = f"🧹 The DM forgot {count} memories of this campaign."
        except EngineError as exc:
            text = friendly(exc)
        await interaction.response.edit_message(content=text, view=None, allowed_mentions=NO_PINGS)

    @discord.ui.button(label="Keep them", style=discord.ButtonStyle.secondary)
    async def keep(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.stop()
        await interaction.response.edit_message(content="Nothing was forgotten.", view=None,
                                                allowed_mentions=NO_PINGS)


class MemoryCommands(app_commands.Group):
    def __init__(self, services: Services) -> None:
        super().__init__(name="memory", description="What the DM remembers of this campaign")
        self.services = services
        self.admin_role = services.config.discord.admin_role

    @app_commands.command(description="List what the DM remembers, pinned facts first")
    async def show(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        campaign = await campaign_here(self.services, interaction)
        memories = await self.services.store.memories(campaign.id)
        view = MemoryPages(memories, interaction.user.id)
        await interaction.followup.send(memory_page(memories, 0), view=view, ephemeral=True,
                                        allowed_mentions=NO_PINGS)

    @app_commands.command(description="What the last turn's prompt held from memory")
    async def last(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        campaign = await campaign_here(self.services, interaction)
        last = await self.services.narrator.last_memory(campaign.id)
        await interaction.followup.send(last_memory_text(*last) if last else "No turn has been narrated yet.",
                                        ephemeral=True, allowed_mentions=NO_PINGS)

    @app_commands.command(description="Pin a fact the DM always remembers")
    @app_commands.describe(fact="The fact, e.g. 'The cellar password is blue heron'")
    async def add(self, interaction: discord.Interaction, fact: str) -> None:
        await interaction.response.defer(ephemeral=True)
        require_admin(interaction, self.admin_role)
        campaign = await campaign_here(self.services, interaction)
        memory, note = await self.services.narrator.pin_fact(campaign, fact)
        kept = "" if memory.text == fact.strip() else f": {discord.utils.escape_markdown(memory.text[:300])}"
        await interaction.followup.send(f"📌 Pinned `#{memory.id}`{kept}" + (f"\n{note}" if note else ""),
                                        ephemeral=True, allowed_mentions=NO_PINGS)

    @app_commands.command(description="Delete one memory by its number")
    @app_commands.describe(memory_id="The memory's number from /dm memory show")
    async def forget(self, interaction: discord.Interaction, memory_id: int) -> None:
        await interaction.response.defer(ephemeral=True)
        require_admin(interaction, self.admin_role)
        campaign = await campaign_here(self.services, interaction)
        if not await self.services.store.delete_memory(campaign.id, memory_id):
            raise BadInput(f"this campaign has no memory #{memory_id}")
        await interaction.followup.send(f"🗑️ Forgot `#{memory_id}`.", ephemeral=True, allowed_mentions=NO_PINGS)

    @app_commands.command(description="Wipe this campaign's memories (asks first)")
    async def reset(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        require_admin(interaction, self.admin_role)
        campaign = await campaign_here(self.services, interaction)
        count = await self.services.store.memory_count(campaign.id)
        view = ConfirmReset(self.services, campaign.id, campaign.channel_id, interaction.user.id)
        await interaction.followup.send(f"⚠️ Forget all {count} memories of **{campaign.name}**, pinned facts too?",
                                        view=view, ephemeral=True, allowed_mentions=NO_PINGS)
