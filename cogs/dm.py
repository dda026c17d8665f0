"""The /dm command group: start and end a campaign, narrate, retry, undo, status and settings."""
from __future__ import annotations

import asyncio
import functools
import logging
import re

import discord
from discord import app_commands
from discord.ext import commands

from bot.services import Services
from cogs.cards import CardCommands
from cogs.combat import CombatCommands, QuestCommands, refresh_tracker, tracker_follows
from cogs.common import acknowledge, begin, campaign_here, is_admin, reply, require_admin, shorten
from cogs.glossary import GlossaryCommands
from cogs.memory import MemoryCommands
from cogs.pictures import PICTURES_OFF, PictureDesk
from cogs.record import add_record_commands
from cogs.render import StreamTarget, narrate
from cogs.roll_requests import RollButton
from cogs.rounds import RoundDesk, round_desk
from cogs.sheets import InventoryCommands, SheetCommands, change as change_sheet
from engine.errors import BadInput
from engine.game import Roll, amount, roll as roll_dice
from engine.jobs import Job
from engine.records import Campaign
from engine.table.settings import CAMPAIGN_TEXTS, setting_names
from engine.translation import Translation

log = logging.getLogger(__name__)
LANGUAGE = re.compile(r"[A-Za-z]{2,8}")


def language_code(value: str, translation: Translation) -> str:
    if not LANGUAGE.fullmatch(value.strip()):
        raise BadInput(f"{shorten(repr(value), 40)} is not a language code such as en or ru")
    translation.check_language(value.strip().lower())
    return value.strip().lower()


def parse_setting(name: str, value: str) -> object:
    """A setting's value as typed in Discord: true/false, a whole number or a decimal one."""
    text = value.strip().lower()
    if text in ("true", "yes", "on"):
        return True
    if text in ("false", "no", "off"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    raise BadInput(f"{name} must be a number or true/false, not {shorten(repr(value), 40)}")


class DungeonMaster(commands.GroupCog, group_name="dm", group_description="The Dungeon Master"):
    """/dm and its subcommands; the rounds are the RoundDesk's, which the Table cog shares."""

    def __init__(self, services: Services, rounds: RoundDesk) -> None:
        self.services, self.rounds = services, rounds
        self.pictures = PictureDesk(services)
        super().__init__()
        self.app_command.add_command(MemoryCommands(services))
        self.app_command.add_command(GlossaryCommands(services))
        self.app_command.add_command(CardCommands(services))
        self.app_command.add_command(SheetCommands(services))
        self.app_command.add_command(InventoryCommands(services))
        add_record_commands(self.app_command, services)
        self.app_command.add_command(CombatCommands(services))
        self.app_command.add_command(QuestCommands(services))

    # --- campaign ---
    @app_commands.command(description="Start a campaign in this channel")
    @app_commands.describe(premise="What the campaign is about", language="The players' language, e.g. en or ru")
    async def start(self, interaction: discord.Interaction, premise: str = "", language: str = "en") -> None:
        # Refusals come before the public defer, so they go only to who asked (see `begin`).
        language = language_code(language, self.services.translation)
        await self.services.edits.check_new_campaign(interaction.channel_id or 0, premise)
        await acknowledge(interaction, public=True)
        channel = interaction.channel
        name = getattr(channel, "name", None) or f"channel-{interaction.channel_id}"
        _, note = await self.services.edits.start_campaign(interaction.channel_id or 0, name, premise, language)
        about = f" {discord.utils.escape_mentions(premise.strip())}" if premise.strip() else ""  # as the admin wrote it
        await reply(interaction,
                    f"🎲 A new campaign begins in this channel.{about}\nWrite what your characters do as ordinary "
                    f"messages, then use `/dm continue` and the DM narrates.{self.language_note(language)}"
                    + (f"\n-# {note}" if note else ""), public=True)

    def language_note(self, language: str) -> str:
        translation = self.services.translation
        if translation.needed(language):
            return (f"\n🌐 Played in `{language}`; the DM thinks in `{translation.model_language}` and "
                    "translates both ways. Keep names right with `/dm glossary add`.")
        if language != translation.model_language:
            return (f"\n🌐 Translation is off on this bot, so the DM answers in `{translation.model_language}` "
                    "(the host can set a provider under [translation] in config.toml).")
        return ""

    @app_commands.command(description="End this channel's campaign (its story is kept)")
    async def end(self, interaction: discord.Interaction) -> None:
        # Checked before the public defer (`begin`): after it, even an "ephemeral" refusal would replace
        # the public "thinking…" reply and show to the whole channel.
        campaign = await begin(interaction, self.services, admin=True, public=True)
        self.services.runner.cancel_channel(campaign.channel_id)
        await self.services.edits.end_campaign(campaign)
        await self.rounds.keeper.check(campaign.id)  # its round note closes
        await reply(interaction, f"🏁 The campaign **{campaign.name}** has ended; its story is kept.", public=True)

    # --- narration ---
    @app_commands.command(name="continue", description="The DM narrates what happens next")
    @app_commands.describe(text="Optional direction for the DM")
    async def continue_(self, interaction: discord.Interaction, text: str = "") -> None:
        campaign = await begin(interaction, self.services, public=True)  # a refusal stays private
        handle = self.services.runner.submit(Job(campaign.id, campaign.channel_id, "turn", payload={"text": text}))
        async with self.rounds.keeper.narrating(campaign.id):  # a waiting round is narrated now
            await narrate(StreamTarget(interaction), handle,
                          on_fight=tracker_follows(self.services, interaction.channel, campaign))  # type: ignore[arg-type]

    @app_commands.command(description="Take back your latest action that the DM has not narrated yet")
    @app_commands.describe(player="Admins: take back this player's latest pending action instead")
    async def withdraw(self, interaction: discord.Interaction, player: discord.Member | None = None) -> None:
        campaign = await campaign_here(self.services, interaction)
        if player is not None and player.id != interaction.user.id:
            require_admin(interaction, self.services)
        whose = player or interaction.user
        action = await self.services.edits.withdraw_action(campaign_id=campaign.id, author_id=whose.id)
        if action is None:
            raise BadInput("there is no pending action to take back" + (f" from {whose.display_name}" if player else ""))
        await self.rounds.keeper.check(campaign.id)
        text = shorten(action.written, 300)
        await reply(interaction, f"↩️ Taken back: {discord.utils.escape_markdown(text)}")

    @app_commands.command(description="Roll dice: 1d20+5, 4d6kh3, 2d20kl1, 8d6 [fire], 1d20+5 adv")
    @app_commands.describe(dice="The dice, e.g. 1d20+5, 4d6kh3 or 1d20 adv", reason="What for, e.g. Stealth",
                           secret="Only you and the admins see the dice (/dm status); the DM still narrates the result")
    async def roll(self, interaction: discord.Interaction, dice: str, reason: str = "", secret: bool = False) -> None:
        name = interaction.user.display_name
        here = await self.services.store.campaign_for_channel(interaction.channel_id or 0)
        sheet = await self.services.edits.sheet(here, interaction.user.id) if here else None
        modifiers = sheet.modifiers() if sheet else None  # "1d20+stealth" reads the roller's sheet
        made: list[Roll] = []  # rolled in the check: a roll that cannot be made is refused privately
        campaign = await begin(interaction, self.services, public=not secret,
                               check=lambda: made.append(roll_dice(dice, modifiers, reason=reason)))
        await self.services.edits.add_roll(campaign, interaction.user.id, name, made[0], reason, secret=secret)
        why = f", {discord.utils.escape_markdown(' '.join(reason.split()))}" if reason.strip() else ""
        await reply(interaction, shorten(f"🎲 {discord.utils.escape_markdown(name)}{why}: {made[0].shown}"),
                    public=not secret)
        await self.rounds.keeper.check(campaign.id)  # a roll is an action: the round may be complete

    @app_commands.command(description="Change your character's HP: -5, +3, or dice such as -2d6 (admins: anyone's)")
    @app_commands.describe(change="Damage as -N, healing as +N, or dice", player="Admins: this player's character")
    async def hp(self, interaction: discord.Interaction, change: str, player: discord.Member | None = None) -> None:
        rolled = functools.cache(lambda: amount(change))  # dice rolled once: tried first, then applied
        await change_sheet(interaction, self.services, player, lambda sheet: sheet.with_hp(rolled()))

    @app_commands.command(description="Narrate the last turn anew")
    async def retry(self, interaction: discord.Interaction) -> None:
        campaign = await begin(interaction, self.services, public=True)
        handle = self.services.runner.submit(Job(campaign.id, campaign.channel_id, "retry"))
        async with self.rounds.keeper.narrating(campaign.id):
            await narrate(StreamTarget(interaction), handle, note="🔁 retold",
                          on_fight=tracker_follows(self.services, interaction.channel, campaign))  # type: ignore[arg-type]

    @app_commands.command(description="The story so far in a few sentences, for who missed a session")
    async def recap(self, interaction: discord.Interaction) -> None:
        here = await self.services.store.campaign_for_channel(interaction.channel_id or 0)
        turns = await self.services.store.turn_count(here.id) if here else 0

        def something_happened() -> None:  # refused before the public defer: only who asked sees it
            if not turns:
                raise BadInput("nothing has happened yet: the story starts with the first /dm continue")
        campaign = await begin(interaction, self.services, public=True, check=something_happened)
        told = await self.services.runner.submit(Job(campaign.id, campaign.channel_id, "recap")).result()
        await reply(interaction, shorten(f"📖 {told}"), public=True)

    @app_commands.command(description="Take back the last turn; its actions become pending again")
    async def undo(self, interaction: discord.Interaction) -> None:
        campaign = await begin(interaction, self.services, public=True)
        turn = await self.services.runner.submit(Job(campaign.id, campaign.channel_id, "undo")).result()
        text = f"↩️ Turn {turn.number} was undone; its actions are pending again." if turn else "Nothing to undo yet."
        if turn and (turn.effects or {}).get("applied"):
            text += " What it did to the characters was taken back."
        if turn and "fight_before" in (turn.effects or {}):
            text += " The fight is back as it was."
        await reply(interaction, text, public=True)
        if turn and "fight_before" in (turn.effects or {}):
            await refresh_tracker(self.services, interaction.channel, campaign)  # type: ignore[arg-type]
        await self.rounds.keeper.check(campaign.id)  # the undone turn's actions make a round again

    # --- rounds ---
    @app_commands.command(description="Play in this campaign's rounds: the DM waits for your action")
    async def join(self, interaction: discord.Interaction) -> None:
        await self._seat(interaction, joined=True)

    @app_commands.command(description="Step away: the rounds stop waiting for your action")
    async def leave(self, interaction: discord.Interaction) -> None:
        await self._seat(interaction, joined=False)

    async def _seat(self, interaction: discord.Interaction, *, joined: bool) -> None:
        campaign = await campaign_here(self.services, interaction)
        user = interaction.user
        await self.services.edits.seat(campaign, user.id, user.display_name, joined=joined)
        rounds = self.services.narrator.campaign_settings(campaign).rounds
        text = ("🎲 You are in: each round waits for your action." if joined else
                "👋 You stepped away: rounds no longer wait for you (`/dm join` to come back).")
        if not rounds.enabled:
            text += "\n-# Rounds are off in this campaign: the DM narrates on `/dm continue` (an admin can set `rounds` on)."
        await reply(interaction, text)
        await self.rounds.keeper.check(campaign.id)

    async def roll_lines(self, interaction: discord.Interaction, campaign: Campaign) -> list[str]:
        """The latest rolls, newest first: a secret one's dice only for admins and its roller."""
        admin = is_admin(interaction, self.services.config.discord.admin_role)
        lines = []
        for action in await self.services.store.recent_rolls(campaign.id, 5):
            who = discord.utils.escape_markdown(action.author_name)
            if action.secret and not admin and action.author_id != interaction.user.id:
                lines.append(f"  🤫 {who} rolled in secret")
            else:
                shown = discord.utils.escape_markdown(action.text.removeprefix("[rolled ").removesuffix("]"))
                lines.append(f"  🎲 {who}: {shown}" + (" 🤫" if action.secret else ""))
        return ["🎲 Latest rolls:", *lines] if lines else []

    async def round_line(self, campaign: Campaign) -> str:
        state = await self.rounds.keeper.state(campaign)
        if state is None:
            return "🎲 Rounds: off (the DM narrates on `/dm continue`)"
        return f"🎲 {state.line(asyncio.get_running_loop().time())}"

    # --- pictures ---
    @app_commands.command(description="Paint the current scene")
    @app_commands.describe(focus="What the picture should show, e.g. 'the innkeeper'")
    async def picture(self, interaction: discord.Interaction, focus: str = "") -> None:
        campaign = await begin(interaction, self.services, public=True, check=self._pictures_on)
        await self.pictures.paint(interaction, campaign, focus)

    def _pictures_on(self) -> None:
        if self.services.pictures is None:
            raise BadInput(PICTURES_OFF)

    @app_commands.command(description="Note how a character looks, so pictures show them the same way")
    @app_commands.describe(name="The character's name", description="e.g. 'tall dwarf, red braided beard'")
    async def look(self, interaction: discord.Interaction, name: str, description: str) -> None:
        campaign = await begin(interaction, self.services)
        kept, note = await self.services.edits.note_look(campaign, name, description)
        said = "" if kept == description.strip() else f" ({discord.utils.escape_markdown(kept)})"
        await reply(interaction, f"👤 Noted how **{discord.utils.escape_markdown(name.strip())}** looks"
                                 f"{said}." + (f"\n{note}" if note else ""))

    # --- information and settings ---
    @app_commands.command(description="The model, the queue and this campaign's numbers")
    async def status(self, interaction: discord.Interaction) -> None:
        await acknowledge(interaction)
        services = self.services
        stopped = "" if services.text.available else " (unavailable: the model worker stopped)"
        lines = [f"🧠 Model: {services.backend.name}{stopped}",
                 f"⏳ Queue: {services.runner.queue_length(interaction.channel_id)} here, "
                 f"{services.runner.queue_length()} in all"]
        campaign = await services.store.campaign_for_channel(interaction.channel_id or 0)
        if campaign is None:
            lines.append("No campaign in this channel: start one with `/dm start`.")
        else:
            store = services.store
            lines += [f"🎲 Campaign: {campaign.name} (language {campaign.language})",
                      f"📜 Turns: {await store.turn_count(campaign.id)}",
                      f"📌 Memories: {await store.memory_count(campaign.id)}",
                      f"✍️ Pending actions: {len(await store.pending_actions(campaign.id))}",
                      await self.round_line(campaign), *await self.roll_lines(interaction, campaign)]
        await reply(interaction, "\n".join(lines))

    @app_commands.command(description="Show or change this campaign's generation settings")
    @app_commands.describe(name="The setting to change", value="A number, true/false, or 'default'")
    @app_commands.choices(name=[app_commands.Choice(name=n, value=n) for n in setting_names()])
    async def settings(self, interaction: discord.Interaction, name: str | None = None, value: str | None = None) -> None:
        campaign = await begin(interaction, self.services, admin=True)
        narrator, edits = self.services.narrator, self.services.edits
        overrides, note = dict(campaign.settings), None
        if name == "language":
            if value is None:
                raise BadInput("give a language code such as en or ru")
            language = language_code("en" if value.strip().lower() == "default" else value,
                                     self.services.translation)
            campaign = await edits.set_language(campaign, language)
        elif name in CAMPAIGN_TEXTS:
            if value is None:
                raise BadInput(f"give the {name} (or 'default' to clear it)")
            text = "" if value.strip().lower() == "default" else value
            campaign, note = await edits.set_campaign_text(campaign, name, text)
        elif name is not None:
            if value is None:
                raise BadInput(f"give a value for {name} (or 'default')")
            if value.strip().lower() == "default":
                overrides.pop(name, None)
            else:
                overrides[name] = parse_setting(name, value)
            campaign = await edits.set_settings(campaign, overrides)  # refuses bad values, storing nothing
            await self.rounds.keeper.check(campaign.id)  # rounds on, off, or a new timeout
        effective = narrator.campaign_settings(campaign)
        values = effective.listing()
        texts = {"premise": campaign.premise, "style": campaign.style, "author_note": effective.author_note}
        lines = [f"`language` = {campaign.language}",
                 *(f"`{k}` = {shorten(discord.utils.escape_markdown(v), 200) if v else '(none)'}" for k, v in texts.items()),
                 *(f"`{k}` = {v}{' *(this campaign)*' if k in campaign.settings else ''}" for k, v in values.items())]
        head = f"✅ {name} set.{self.language_note(campaign.language) if name == 'language' else ''}\n" if name else ""
        head += f"-# {note}\n" if note else ""
        await reply(interaction, head + "\n".join(lines))


async def setup(bot: commands.Bot) -> None:
    """The extension: /dm, over the bot's services and its one RoundDesk."""
    await bot.add_cog(DungeonMaster(bot.services, await round_desk(bot)))  # type: ignore[attr-defined]
    bot.add_dynamic_items(RollButton)  # the Roll buttons under narrations, after a restart too
