"""Command line: `python -m bot [run|play|sync]`."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from bot.config import ConfigError, load_config
from engine.errors import EngineError

log = logging.getLogger("bot")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bot", description="The Discord Dungeon Master.")
    # The shared options go before or after the command (`python -m bot play --config FILE`): the
    # subcommands' copies leave the value alone unless they are given there.
    shared = argparse.ArgumentParser(add_help=False)
    for target, default in ((parser, None), (shared, argparse.SUPPRESS)):
        target.add_argument("--config", default=os.environ.get("DM_CONFIG") if default is None else default,
                            help="config file (default: $DM_CONFIG or ./config.toml; missing = all defaults)")
        target.add_argument("--log-level", default="INFO" if default is None else default)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the Discord bot (the default)", parents=[shared])
    sync = sub.add_parser("sync", help="register the slash commands with Discord, then exit", parents=[shared])
    sync.add_argument("--guild", type=int, default=None, help="a server id: its commands update at once")
    play = sub.add_parser("play", help="play a campaign in the terminal, offline", parents=[shared])
    play.add_argument("--campaign", default="terminal", help="campaign name (created if new)")
    play.add_argument("--player", default="Player", help="your character's name")
    play.add_argument("--premise", default=None, help="premise for a new campaign")
    play.add_argument("--language", default=None, help="the language you play in, e.g. ru ([translation] in the config)")
    return parser.parse_args(argv)


async def sync_commands(config, token: str, guild_id: int | None) -> int:
    """Log in without loading models, register the slash commands, and leave."""
    from bot.app import DungeonMasterBot

    import discord

    bot = DungeonMasterBot(config, load_services=False)
    async with bot:
        await bot.login(token)
        guild = discord.Object(id=guild_id) if guild_id else None
        if guild is not None:
            bot.tree.copy_global_to(guild=guild)
        synced = await bot.tree.sync(guild=guild)
    log.info("synced %d commands %s", len(synced), f"to server {guild_id}" if guild_id else "globally (up to an hour)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = args.command or "run"
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if command == "play":
        # The terminal is the interface: keep library chatter (progress bars, warnings) out of it.
        logging.getLogger().setLevel(logging.WARNING)
        os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        config = load_config(args.config)
        if command == "play":
            from bot.play import play

            return asyncio.run(play(config, args.campaign, args.player, args.premise, language=args.language))
        token = config.discord.token()
        if not token:
            print(f"No Discord token: set the environment variable {config.discord.token_env} (README.md, "
                  "'Running on Discord'). To play offline in this terminal: python -m bot play", file=sys.stderr)
            return 2
        if command == "sync":
            return asyncio.run(sync_commands(config, token, args.guild))
        from bot.app import create_bot

        return run_bot(create_bot(config), token)
    except (ConfigError, EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def run_bot(bot, token: str) -> int:
    """Run the bot until it is stopped; what keeps it from Discord is one line (exit code 1), not a traceback."""
    import aiohttp
    import discord

    try:
        bot.run(token, log_handler=None)  # logging is set up in main
    except discord.LoginFailure:
        return _fail("Discord refused the token: copy the bot's token again from the Developer Portal (Bot, Reset "
                     "Token) into the environment variable that [discord] token_env names")
    except discord.PrivilegedIntentsRequired:
        return _fail("Discord refused the Message Content intent: turn it on in the Developer Portal (Bot, "
                     "Privileged Gateway Intents, Message Content Intent), then start the bot again")
    except (aiohttp.ClientError, discord.GatewayNotFound, OSError, asyncio.TimeoutError) as exc:
        return _fail(f"cannot reach Discord ({exc.__class__.__name__}: {exc or 'no answer'}): check this "
                     "machine's network; to play offline in this terminal: python -m bot play")
    except discord.HTTPException as exc:
        return _fail(f"Discord answered {exc.status} ({exc.text or exc.__class__.__name__}); try again later")
    return 0


def _fail(line: str) -> int:
    print(f"error: {line}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
