"""/dm picture: a placeholder with a progress bar and a Cancel button, then the scene as an attachment."""
from __future__ import annotations

import io
import logging

import discord

from bot.services import Services
from cogs.errors import NO_PINGS, friendly
from engine.errors import BadInput, EngineError
from engine.jobs import Job
from engine.pictures import PictureClient, Progress
from engine.store import Campaign

log = logging.getLogger(__name__)
PICTURES_OFF = ("pictures are off. To turn them on, run an AUTOMATIC1111 (or Forge, SD.Next) web UI with --api "
                "and set `enabled = true` and its `url` under [pictures] in config.toml (README, 'Pictures')")


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
            await interaction.response.send_message("🔒 Only who asked for the picture can cancel it.",
                                                    ephemeral=True, allowed_mentions=NO_PINGS)
            return
        self.cancelled = True
        self.stop()
        await interaction.response.edit_message(content="✋ Cancelling the picture…", view=None)
        await self.client.interrupt()


class PictureDesk:
    """What /dm picture does between the command and the finished attachment."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def show(self, interaction: discord.Interaction, content: str, **extra) -> None:
        await interaction.edit_original_response(content=content, allowed_mentions=NO_PINGS, **extra)

    async def paint(self, interaction: discord.Interaction, campaign: Campaign, focus: str) -> None:
        client = self.services.pictures
        if client is None:
            raise BadInput(PICTURES_OFF)
        ticket = self.services.painter.reserve(campaign.channel_id)
        try:
            prompt = await self._prompt(interaction, campaign, focus)
            while ticket.position() > 0:
                position = ticket.position()
                await self.show(interaction, f"🎨 Waiting for the painter: {position} picture(s) ahead.")
                await ticket.moved(position)
            await self._paint(interaction, client, campaign, prompt)
        except EngineError as exc:
            await self.show(interaction, friendly(exc), view=None, attachments=[])
        finally:
            ticket.release()

    async def _prompt(self, interaction: discord.Interaction, campaign: Campaign, focus: str) -> str:
        """The text model writes the prompt; while it serves turns, the user sees the picture wait."""
        handle = self.services.runner.submit(
            Job(campaign.id, campaign.channel_id, "picture_prompt", payload={"focus": focus}))
        while not handle.started and not handle.done:
            position = handle.position()
            await self.show(interaction, f"🎨 The picture waits for the storyteller: {position} job(s) ahead.")
            await handle.moved(position)
        if not handle.done:
            await self.show(interaction, "🎨 Looking at the scene…")
        return await handle.result()

    async def _paint(self, interaction: discord.Interaction, client: PictureClient, campaign: Campaign,
                     prompt: str) -> None:
        settings = self.services.narrator.campaign_settings(campaign)
        view = CancelPicture(client, interaction.user.id)

        async def on_progress(progress: Progress) -> None:
            if view.cancelled:
                return
            extra = {}
            if progress.preview:
                extra["attachments"] = [discord.File(io.BytesIO(progress.preview), "preview.png")]
            await self.show(interaction, progress_text(progress), view=view, **extra)

        await self.show(interaction, "🎨 Painting the scene…", view=view)
        picture = await client.paint(prompt, None if settings.picture_seed < 0 else settings.picture_seed,
                                     on_progress)
        view.stop()
        if view.cancelled:
            await self.show(interaction, "✋ The picture was cancelled.", view=None, attachments=[])
            return
        file = discord.File(io.BytesIO(picture.image), picture.filename, spoiler=settings.picture_spoiler)
        caption = prompt if len(prompt) <= 300 else prompt[:299] + "…"
        await self.show(interaction, f"-# 🎨 {discord.utils.escape_markdown(caption)}", view=None,
                        attachments=[file])
