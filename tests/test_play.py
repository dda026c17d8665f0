"""`python -m bot play` driven through stdin, as a person at a terminal would use it."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import MODEL_CACHE, ROOT


def write_config(tmp_path, extra: str = "", generation: str = "") -> str:
    path = tmp_path / "config.toml"
    path.write_text(f'[storage]\npath = "dm.sqlite3"\n[llm]\ncache_dir = "{MODEL_CACHE}"\n{extra}'
                    f'[llm.generation]\nmax_new_tokens = 8\n{generation}')
    return str(path)


def play(config: str, lines: list[str], *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "bot", "--config", config, "play", *args],
                          input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=300, env=env,
                          cwd=ROOT)


def test_play_mode_plays_remembers_and_keeps_the_campaign(tmp_path):
    config = write_config(tmp_path)
    first = play(config, ["/memory last", "/card Mirelda, innkeeper = Mirelda runs the inn.", "/card no equals sign",
                          "I open the tavern door.", "/pin The cellar password is blue heron.", "/memory",
                          "", "/continue", "/memory last", "/cards", "/undo", "/help", "/quit"],
                 "--player", "Bram", "--campaign", "Mill")
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "[loading models" in out and "Campaign 'Mill' (0 turns so far)" in out
    assert out.count("DM: ") >= 2  # the action and /continue were narrated
    assert "Bram: I open the tavern door." in out  # /memory shows the exact entry
    assert "[pinned] The cellar password is blue heron." in out
    assert "(no turn has been narrated yet)" in out  # /memory last before the first turn
    assert "Turn 2's prompt:" in out and "Recent story: turn 1" in out  # ...and after the second
    assert "(turn 2 undone)" in out and "/retry" in out and "(saved; goodbye)" in out
    assert "(card #1 [Mirelda, innkeeper]: Mirelda runs the inn.)" in out and "(usage: /card <keys" in out
    assert "  #1 [Mirelda, innkeeper] Mirelda runs the inn." in out
    assert "Traceback" not in out + first.stderr
    again = play(config, ["/memory"], "--campaign", "Mill")  # ends at end of input, like Ctrl-D
    assert again.returncode == 0 and "Campaign 'Mill' (1 turns so far)" in again.stdout
    assert "blue heron" in again.stdout


def test_play_refuses_a_blank_campaign_turn_and_a_broken_config_clearly(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[memory]\ntopk = 3\n")
    result = play(str(bad), ["/quit"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: {bad}: unknown key memory.topk (did you mean top_k?)"
    missing = play(write_config(tmp_path, 'model = "/nowhere/model.gguf"\n'), ["/quit"])
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1] == "error: model file not found: /nowhere/model.gguf"


def test_play_in_russian_through_a_translator(tmp_path):
    from sd_server import ServerThread
    from translate_server import TranslateServer

    thread = ServerThread(TranslateServer())
    server = thread.start()
    try:
        # Greedy: a sampled narration may be all digits, with nothing to translate.
        config = write_config(tmp_path, f'[translation]\nprovider = "yandex"\nurl = "{server.url}"\n',
                              generation="do_sample = false\n")
        result = play(config, ["Я открываю дверь.", "/memory", "/quit"], "--language", "ru", "--player", "Aria")
    finally:
        thread.stop()
    assert result.returncode == 0, result.stderr
    (dm,) = [line for line in result.stdout.splitlines() if line.startswith("> DM: ")]
    narration = dm.removeprefix("> DM: ")
    assert re.search("[а-яА-Я]", narration) and not re.findall(r"\b[A-Za-z]{3,}\b", narration.replace("Aria", ""))
    assert "Aria: I open door." in result.stdout  # /memory: the story is kept in English
    assert "Я открываю дверь." in server.texts
    bad = play(config, ["/quit"], "--language", "русский")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == "error: 'русский' is not a language code such as en or ru"


def test_play_with_a_model_server_through_the_openai_backend(tmp_path):
    from openai_server import OpenAIServer
    from sd_server import ServerThread

    thread = ServerThread(OpenAIServer(fail_first=[503], retry_after="0"))
    server = thread.start()
    try:
        config = write_config(tmp_path, f'backend = "openai"\nmodel = "smollm2:135m"\nbase_url = "{server.url}/v1"\n'
                                        '[llm.server]\nretries = 1\nread_timeout_s = 1\n')
        result = play(config, ["I open the tavern door.", "/quit"], "--player", "Bram")
        assert result.returncode == 0, result.stderr
        assert "DM: The lantern flickers as the door creaks open." in result.stdout
        assert len(server.requests) == 2 and server.requests[1]["model"] == "smollm2:135m"  # a 503, then the reply
        # The stream shows what the story keeps, as it streams: never the first-person sentence or the
        # unfinished one, and so nothing to correct at the end.
        server.words = "The door creaks open. I step inside and smile. Dust hangs in the air, and".split()
        kept = play(config, ["I open the door.", "/quit"], "--player", "Bram")
        assert kept.returncode == 0, kept.stderr
        assert "DM: The door creaks open.\n" in kept.stdout and "kept in the story" not in kept.stdout
        assert "I step inside" not in kept.stdout and "Dust hangs" not in kept.stdout
        server.mode = "slow"
        slow = play(config, ["I wait.", "/quit"], "--player", "Bram")
    finally:
        thread.stop()
    assert slow.returncode == 0 and "Traceback" not in slow.stdout + slow.stderr
    assert "the model server is too slow to answer" in slow.stdout
    down = play(config, ["I wait.", "/memory", "/quit"], "--player", "Bram")  # the server is gone
    assert down.returncode == 0 and "cannot reach the model server" in down.stdout
    assert "Bram: I open the tavern door." in down.stdout  # the story so far is all there


def test_dice_and_the_sheet_in_the_terminal(tmp_path):
    config = write_config(tmp_path)
    lines = ["/sheet max_hp 20", "/sheet hp 20", "/hp -7", "/inv add rope 2", "/inv remove rope", "/gold +5",
             "/sheet", "/roll 1d20+2 for luck", "/sheet dex 99", "/roll 1d0", "/quit"]
    result = play(config, lines, "--player", "Bram")
    out = result.stdout
    assert result.returncode == 0 and "Traceback" not in out + result.stderr, result.stderr
    assert "(Bram takes 7 damage (HP 13/20))" in out and "(Bram gains 2 rope)" in out and "(Bram loses rope)" in out
    assert "Bram: HP 13/20, AC 10; carries rope; 5 gold" in out
    assert "🎲 Bram, luck: 1d20 (" in out
    assert "(the DM cannot do that: dex must be from 1 to 30)" in out and "0-sided die" in out


def test_the_dms_markers_in_the_terminal(tmp_path):
    """A model server that writes markers: the damage applied and shown, the roll asked and made with /roll,
    and no raw marker printed."""
    from openai_server import OpenAIServer
    from sd_server import ServerThread

    thread = ServerThread(OpenAIServer(
        words="The wolf bites you. [[hp Bram -3]] Roll to calm it. [[roll 1d20+2 animal handling for Bram]]".split()))
    server = thread.start()
    try:
        config = write_config(tmp_path, f'backend = "openai"\nmodel = "smollm2:135m"\nbase_url = "{server.url}/v1"\n')
        text = open(config).read().replace("max_new_tokens = 8", "max_new_tokens = 60")
        with open(config, "w") as file:
            file.write(text)
        result = play(config, ["/sheet max_hp 20", "/sheet hp 20", "I calm the wolf.", "/roll", "/roll", "/sheet",
                               "/quit"], "--player", "Bram")
    finally:
        thread.stop()
    out = result.stdout
    assert result.returncode == 0 and "Traceback" not in out + result.stderr, result.stderr
    assert "DM: The wolf bites you. Roll to calm it." in out and "[[" not in out and "]]" not in out
    assert "📜 Bram takes 3 damage (HP 17/20)" in out
    assert "🎲 Bram, roll 1d20+2 for animal handling: type /roll" in out
    assert re.search(r"🎲 Bram, animal handling: 1d20 \((\*\*)?\d+(\*\*)?\) \+ 2 = `\d+`", out), out
    assert "(the DM asked for no roll: /roll <dice>" in out  # the second /roll: it was made
    assert "Bram: HP 17/20, AC 10" in out
