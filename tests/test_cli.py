"""`python -m bot` as the server owner meets it: clear lines, never a traceback."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT


def run_bot(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"}
    environment.update(env or {}, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True, timeout=120,
                          env=environment, cwd=ROOT)


def test_no_token_points_to_the_readme_and_to_play_mode(tmp_path):
    for args in ((), ("run",), ("sync", "--guild", "1")):
        result = run_bot(*args)
        assert result.returncode == 2, result.stderr
        assert "No Discord token: set the environment variable DISCORD_TOKEN" in result.stderr
        assert "README.md" in result.stderr and "python -m bot play" in result.stderr
        assert "Traceback" not in result.stderr


def test_an_explicit_config_that_does_not_exist_is_one_line(tmp_path):
    result = run_bot("--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "nope.toml" in result.stderr and "not found" in result.stderr


def test_the_invite_url_asks_for_exactly_the_permissions_the_bot_uses():
    from bot.app import PERMISSIONS, invite_url

    url = invite_url(1234)
    assert "client_id=1234" in url and "scope=bot+applications.commands" in url
    assert f"permissions={PERMISSIONS.value}" in url
    assert PERMISSIONS.add_reactions and PERMISSIONS.send_messages and not PERMISSIONS.administrator
    assert not PERMISSIONS.mention_everyone and not PERMISSIONS.manage_messages


async def test_sharding_is_a_config_switch(make_config):
    """discord.shards: one connection by default, AutoShardedBot when a host asks for it."""
    from discord.ext import commands

    from bot.app import DungeonMasterBot, create_bot

    plain = create_bot(make_config(), load_services=False)
    auto = create_bot(make_config(discord={"shards": "auto"}), load_services=False)
    fixed = create_bot(make_config(discord={"shards": "4"}), load_services=False)
    assert not isinstance(plain, commands.AutoShardedBot)
    assert all(isinstance(b, commands.AutoShardedBot) and isinstance(b, DungeonMasterBot) for b in (auto, fixed))
    assert auto.shard_count is None and fixed.shard_count == 4  # None: Discord says how many at login
    await plain.close()  # (discord.py's AutoShardedClient cannot close before it ever connected)


async def test_sync_loads_every_command_without_loading_the_models(make_config):
    """`python -m bot sync` builds the bot with no services (no models) and registers its command tree."""
    from bot.app import create_bot

    bot = create_bot(make_config(), load_services=False)
    try:
        await bot.setup_hook()  # what login runs before the tree is synced
        assert bot.services is None
        (dm,) = [c for c in bot.tree.get_commands() if c.name == "dm"]
        assert {"continue", "roll", "recap", "combat", "export"} <= {c.name for c in dm.commands}
        assert {"Table", "RoundDesk"} <= set(bot.cogs)
    finally:
        await bot.close()


def test_options_go_before_or_after_the_command():
    from bot.__main__ import parse_args

    before = parse_args(["--config", "a.toml", "play", "--player", "Bram"])
    after = parse_args(["play", "--config", "b.toml", "--log-level", "debug"])
    assert (before.command, before.config, before.player) == ("play", "a.toml", "Bram")
    assert (after.command, after.config, after.log_level) == ("play", "b.toml", "debug")
    assert parse_args(["--config", "c.toml", "sync"]).config == "c.toml"  # not reset by the subcommand
    assert parse_args(["run"]).log_level == "INFO"


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run_against(monkeypatch, make_config, base: str, capsys) -> tuple[int, str]:
    """`bot run`'s own code path (run_bot) against a Discord API at `base` (loopback only)."""
    import discord.http

    from bot.__main__ import run_bot
    from bot.app import create_bot

    monkeypatch.setattr(discord.http.Route, "BASE", base)
    code = run_bot(create_bot(make_config()), "not.a.token")
    return code, capsys.readouterr().err


def test_run_with_no_route_to_discord_is_one_line(monkeypatch, make_config, capsys):
    code, err = _run_against(monkeypatch, make_config, f"http://127.0.0.1:{_closed_port()}/api/v10", capsys)
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: cannot reach Discord") and "python -m bot play" in err


def test_run_with_a_refused_token_is_one_line(monkeypatch, make_config, capsys):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Refuses(BaseHTTPRequestHandler):
        def do_GET(self):  # /users/@me, as discord.py logs in
            body = b'{"message": "401: Unauthorized", "code": 0}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code, err = _run_against(monkeypatch, make_config, f"http://127.0.0.1:{server.server_port}/api/v10", capsys)
    finally:
        server.shutdown()
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: Discord refused the token")
