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
    parser.add_argument("--config", default=os.environ.get("DM_CONFIG"),
                        help="config file (default: $DM_CONFIG or ./config.toml; missing = all defaults)")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the Discord bot (the default)")
    play = sub.add_parser("play", help="play a campaign in the terminal, offline")
    play.add_argument("--campaign", default="terminal", help="campaign name (created if new)")
    play.add_argument("--player", default="Player", help="your character's name")
    play.add_argument("--premise", default=None, help="premise for a new campaign")
    return parser.parse_args(argv)


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

            return asyncio.run(play(config, args.campaign, args.player, args.premise))
        token = config.discord.token()
        if not token:
            print(f"No Discord token: set the environment variable {config.discord.token_env} (README.md, "
                  "'Running on Discord'). To play offline in this terminal: python -m bot play", file=sys.stderr)
            return 2
        print("The Discord layer is not built yet. To play offline in this terminal: python -m bot play",
              file=sys.stderr)
        return 2
    except (ConfigError, EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
