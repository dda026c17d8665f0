"""/dm export and /dm import: the campaign as a file (engine/table/record_file.py does the work).

Export: anyone; the file goes only to who asked (an ephemeral reply), and a secret roll's dice are only in an
admin's export. Past the server's upload limit the file is gzipped, and past it still split into numbered parts,
one message each. Import: admins only, into a channel with no campaign running; a .json or .json.gz file.
Refusals are seen only by who asked.

The two commands join the /dm group through `add_record_commands(group, services)`, called by cogs/dm.py.
"""
from __future__ import annotations

import io
import logging
import re
from typing import Callable

import discord
from discord import app_commands

from bot.services import Services
from cogs.common import acknowledge, begin, is_admin, reply, require_admin
from engine.errors import BadInput
from engine.table import record_file

log = logging.getLogger(__name__)
DEFAULT_UPLOAD_LIMIT = 25 * 1024 * 1024  # outside a server (and for a server discord.py does not know)
FORMATS = [app_commands.Choice(name="markdown (a book to read)", value="markdown"),
           app_commands.Choice(name="json (everything, to import again)", value="json")]


def upload_limit(interaction: discord.Interaction) -> int:
    """The most bytes one attachment may have here: the server's limit, else Discord's default."""
    guild = interaction.guild
    return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT


def file_stem(name: str) -> str:
    """A campaign's name as a file name: letters, digits, dashes."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:60] or "campaign"


class RecordDesk:
    """The callbacks of /dm export and /dm import, over the bot's services; `limit` gives the upload limit
    (a test makes it tiny)."""

    def __init__(self, services: Services, limit: Callable[[discord.Interaction], int] | None = None) -> None:
        self.services, self._limit = services, limit

    def limit(self, interaction: discord.Interaction) -> int:
        return (self._limit or upload_limit)(interaction)

    @app_commands.describe(format="markdown: the story as a book; json: everything, for /dm import")
    @app_commands.choices(format=FORMATS)
    async def export(self, interaction: discord.Interaction, format: str = "markdown") -> None:
        campaign = await begin(interaction, self.services)  # a private "thinking…": the file is for who asked
        secrets = is_admin(interaction, self.services.config.discord.admin_role)
        stem = file_stem(campaign.name)
        if format == "json":
            data = record_file.dumps(await record_file.export_json(self.services.store, campaign.id, secrets=secrets))
            name = f"{stem}.json"
        else:
            data = (await record_file.export_markdown(self.services.store, campaign.id, secrets=secrets)).encode()
            name = f"{stem}.md"
        files = record_file.packed(name, data, self.limit(interaction))
        head = f"📜 **{discord.utils.escape_markdown(campaign.name)}** as {format}"
        if len(files) > 1:
            head += (f", gzipped and in {len(files)} parts (past this server's upload limit): join them in order, "
                     f"e.g. `cat {name}.gz.part* > {name}.gz`")
        elif files[0][0].endswith(".gz"):
            head += ", gzipped (past this server's upload limit)"
        if not secrets:
            head += "\n-# Secret rolls show only that they were made: an admin's export holds their dice."
        for index, (filename, body) in enumerate(files):
            text = head if index == 0 else f"part {index + 1} of {len(files)}"
            await interaction.followup.send(text, file=discord.File(io.BytesIO(body), filename=filename),
                                            ephemeral=True)

    @app_commands.describe(file="A .json or .json.gz file from /dm export format:json")
    async def import_(self, interaction: discord.Interaction, file: discord.Attachment) -> None:
        # No campaign may run here, so `begin` (which wants one) is not for this command: the same manners by hand.
        await acknowledge(interaction)
        require_admin(interaction, self.services)
        store = self.services.store
        running = await store.campaign_for_channel(interaction.channel_id or 0)
        if running is not None:
            raise BadInput(f"this channel already has a campaign running: {running.name}; "
                           "import into a channel without one (or end it with /dm end)")
        filename = file.filename.lower()
        if ".part" in filename:
            raise BadInput("that is one part of a split export: join the parts in order into one .json.gz file first")
        if not filename.endswith((".json", ".gz")):
            raise BadInput("import a .json or .json.gz file made by /dm export format:json")
        if file.size > record_file.IMPORT_MAX_BYTES:
            raise BadInput(f"an import may be at most {record_file.IMPORT_MAX_BYTES // (1024 * 1024)} MB")
        data = await file.read()
        campaign = await record_file.import_json(store, self.services.memory, interaction.channel_id or 0, data,
                                                 defaults=self.services.edits.settings)
        turns, memories = await store.turn_count(campaign.id), await store.memory_count(campaign.id)
        name = discord.utils.escape_markdown(campaign.name)
        await reply(interaction, f"📥 Imported **{name}**: {turns} turns, {memories} memories (embedded anew).")
        channel = interaction.channel
        if isinstance(channel, discord.abc.Messageable):
            try:
                await channel.send(f"📖 The campaign **{name}** was imported here ({turns} turns): "
                                   "`/dm continue` goes on from where it stopped.")
            except discord.HTTPException as exc:  # the campaign is imported; who imported it was told
                log.warning("could not announce the import in %s: %s", interaction.channel_id, exc)


def add_record_commands(group: app_commands.Group, services: Services) -> RecordDesk:
    """/dm export and /dm import on the /dm group (cogs/dm.py calls this in its __init__)."""
    desk = RecordDesk(services)
    group.add_command(app_commands.Command(name="export", description="The campaign as a file: markdown or json",
                                           callback=desk.export))
    group.add_command(app_commands.Command(name="import", description="Start a campaign here from a /dm export "
                                           "json file (admins)", callback=desk.import_))
    return desk
