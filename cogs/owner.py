"""`@bot sync [guild id]`: the owner syncs slash commands by hand, never on every start."""
from __future__ import annotations

import discord
from discord.ext import commands


class Owner(commands.Cog):
    """`@bot sync [guild id]`: the owner syncs slash commands by hand, never on every start."""

    @commands.command()
    @commands.is_owner()
    async def sync(self, ctx: commands.Context, guild_id: int | None = None) -> None:
        guild = discord.Object(id=guild_id) if guild_id else None
        if guild is not None:
            ctx.bot.tree.copy_global_to(guild=guild)
        synced = await ctx.bot.tree.sync(guild=guild)
        await ctx.reply(f"Synced {len(synced)} commands {'to that server' if guild else 'globally'}.",
                        mention_author=False)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Owner())
