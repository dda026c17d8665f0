"""/dm picture: a placeholder with a progress bar and a Cancel button, then the scene as an attachment."""
from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass

import discord

from bot.services import Services
from cogs.common import reply, shorten
from cogs.errors import friendly
from cogs.render import StreamTarget
from engine.errors import EngineError
from engine.jobs import Job
from engine.table import defuse_mentions
from engine.pictures import PictureClient, Progress
from engine.records import Campaign
from engine.pictures import PicturePrompt

log = logging.getLogger(__name__)
PICTURES_OFF = ("pictures are off. To turn them on, run an AUTOMATIC1111 (or Forge, SD.Next) web UI with --api "
                "and set `enabled = true` and its `url` under [pictures] in config.toml (README, 'Pictures')")
CAPTION_CHARS = 200


def caption_line(picture: PicturePrompt) -> str:
    """What was painted, in one short line under the picture: no markdown of its own, no pings."""
    caption = shorten(" ".join(picture.caption.split()), CAPTION_CHARS)
    return f"-# 🎨 {discord.utils.escape_markdown(defuse_mentions(caption))}"


def progress_text(progress: Progress, width: int = 12) -> str:
    filled = round(max(0.0, min(1.0, progress.fraction)) * width)
    left = (f"about {progress.eta_s:.0f} s left" if progress.eta_s is not None
            else f"{progress.elapsed_s:.0f} s so far")
    return f"🎨 Painting the scene… `{'▓' * filled}{'░' * (width - filled)}` {progress.fraction:.0%} · {left}"


class CancelPicture(discord.ui.View):
    def __init__(self, client: PictureClient, owner_id: int) -> None:
        super().__init__(timeout=None)
        self.client, self.owner_id, self.cancelled = client, owner_id, False

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.danger)
    async def cancel(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        if interaction.user.id != self.owner_id:
            await reply(interaction, "🔒 Only who asked for the picture can cancel it.")
            return
        self.cancelled = True
        self.stop()
        await interaction.response.edit_message(content="✋ Cancelling the picture…", view=None)
        await self.client.interrupt()


@dataclass
class Reply:
    """One /dm picture's message, and who asked for it."""
    target: StreamTarget
    owner_id: int

    async def show(self, content: str, **extra) -> None:
        await self.target.show(0, content, **extra)


class PictureDesk:
    """What /dm picture does between the command and the finished attachment."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def paint(self, interaction: discord.Interaction, campaign: Campaign, focus: str) -> None:
        client = self.services.pictures
        assert client is not None, "the command checks that pictures are on"
        # A picture that waited past the interaction's 15 minutes still arrives, as a channel message.
        reply = Reply(StreamTarget(interaction), interaction.user.id)
        ticket = self.services.painter.reserve(campaign.channel_id)
        try:
            prompt = await self._prompt(reply, campaign, focus)
            while ticket.position() > 0:
                position = ticket.position()
                await reply.show(f"🎨 Waiting for the painter: {position} picture(s) ahead.")
                await ticket.moved(position)
            await self._paint(reply, client, campaign, prompt)
        except Exception as exc:  # never leave "Looking at the scene…" up; unexpected errors still reach the log
            with contextlib.suppress(discord.HTTPException):
                await reply.show(friendly(exc), view=None, attachments=[])
            if not isinstance(exc, EngineError):
                raise
        finally:
            ticket.release()

    async def _prompt(self, reply: Reply, campaign: Campaign, focus: str) -> PicturePrompt:
        """The text model writes the prompt; while it serves turns, the user sees the picture wait."""
        handle = self.services.runner.submit(
            Job(campaign.id, campaign.channel_id, "picture_prompt", payload={"focus": focus}))
        while not handle.started and not handle.done:
            position = handle.position()
            await reply.show(f"🎨 The picture waits for the storyteller: {position} job(s) ahead.")
            await handle.moved(position)
        if not handle.done:
            await reply.show("🎨 Looking at the scene…")
        return await handle.result()

    async def _paint(self, reply: Reply, client: PictureClient, campaign: Campaign, prompt: PicturePrompt) -> None:
        settings = self.services.narrator.campaign_settings(campaign)
        view = CancelPicture(client, reply.owner_id)

        async def on_progress(progress: Progress) -> None:
            if view.cancelled:
                return
            extra = {}
            if progress.preview:
                extra["attachments"] = [discord.File(io.BytesIO(progress.preview), "preview.png")]
            await reply.show(progress_text(progress), view=view, **extra)

        await reply.show("🎨 Painting the scene…", view=view)
        picture = await client.paint(prompt.prompt, None if settings.picture_seed < 0 else settings.picture_seed,
                                     on_progress)
        view.stop()
        if view.cancelled:
            await reply.show("✋ The picture was cancelled.", view=None, attachments=[])
            return
        file = discord.File(io.BytesIO(picture.image), picture.filename, spoiler=settings.picture_spoiler)
        await reply.show(caption_line(prompt), view=None, attachments=[file])
