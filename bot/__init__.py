"""The Discord side of the bot: configuration, wiring and start-up; cogs live in `cogs/`."""
