"""Tests for bot.config: defaults, the example file, one-line errors naming the dotted key."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from bot.config import Config, ConfigError, load_config, parse_config
from engine.generation import GenerationSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "config.example.toml"


def load_text(tmp_path: Path, text: str, name: str = "config.toml") -> Config:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def error_of(tmp_path: Path, text: str) -> str:
    """The message of the ConfigError that loading `text` raises, less the file name; one line."""
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    prefix = f"{tmp_path / 'config.toml'}: "
    assert message.startswith(prefix)
    return message[len(prefix):]


def without_paths(config: Config) -> Config:
    return dataclasses.replace(
        config,
        storage=dataclasses.replace(config.storage, path="<path>"),
        llm=dataclasses.replace(config.llm, cache_dir="<path>"),
    )


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(None)
    assert without_paths(config) == without_paths(Config())
    assert config.discord.token_env == "DISCORD_TOKEN"
    assert config.discord.ooc_prefixes == ("((", "//")
    assert config.llm.generation == GenerationSettings()
    assert config.runner.batch_size == 4
    assert config.pictures.enabled is False and config.pictures.spoiler is True
    assert config.translation.provider == "none"
    # Relative paths resolve against the current folder when there is no file.
    assert config.storage.path == str(tmp_path / "data" / "dm.sqlite3")
    assert config.llm.cache_dir == str(tmp_path / "data" / "models")


def test_none_reads_config_toml_in_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.toml").write_text("[runner]\nbatch_size = 2\n", encoding="utf-8")
    assert load_config(None).runner.batch_size == 2


def test_empty_file_gives_defaults(tmp_path):
    config = load_text(tmp_path, "")
    assert without_paths(config) == without_paths(Config())


def test_example_file_equals_the_defaults():
    example = load_config(EXAMPLE)
    assert without_paths(example) == without_paths(Config())
    assert example.storage.path == str(REPO_ROOT / "data" / "dm.sqlite3")
    assert example.llm.cache_dir == str(REPO_ROOT / "data" / "models")


def test_example_file_mentions_every_setting():
    text = EXAMPLE.read_text(encoding="utf-8")
    for section in dataclasses.fields(Config):
        assert f"[{section.name}]" in text
        for setting in dataclasses.fields(getattr(Config(), section.name)):
            if "table" in setting.metadata:  # a table of its own: [llm.generation], [llm.server]
                assert f"[{section.name}.{setting.name}]" in text
                for sub in dataclasses.fields(setting.metadata["table"]):
                    assert f"\n{sub.name} = " in text, f"{section.name}.{setting.name}.{sub.name}"
            else:
                assert f"\n{setting.name} = " in text, f"{section.name}.{setting.name}"


def test_values_are_read(tmp_path):
    config = load_text(tmp_path, """
        [discord]
        dev_guild_id = 1234
        ooc_prefixes = ["#"]
        [llm]
        backend = "openai"
        base_url = "http://127.0.0.1:11434/v1"
        device = "cuda:1"
        [llm.server]
        api = "completions"
        [llm.generation]
        temperature = 0.5
        do_sample = false
        [pictures]
        width = 768
    """)
    assert config.discord.dev_guild_id == 1234
    assert config.discord.ooc_prefixes == ("#",)
    assert config.llm.backend == "openai" and config.llm.device == "cuda:1"
    assert config.llm.server.api == "completions" and config.llm.server.retries == 3
    assert config.llm.generation.temperature == 0.5
    assert config.llm.generation.do_sample is False
    assert config.llm.generation.top_k == 50
    assert config.pictures.width == 768


def test_int_is_accepted_for_float(tmp_path):
    config = load_text(tmp_path, """
        [runner]
        job_timeout_s = 30
        [llm.generation]
        temperature = 1
        [memory]
        min_score = 0
    """)
    assert config.runner.job_timeout_s == 30.0 and isinstance(config.runner.job_timeout_s, float)
    assert config.llm.generation.temperature == 1.0
    assert isinstance(config.llm.generation.temperature, float)
    assert isinstance(config.memory.min_score, float)


def test_relative_paths_resolve_against_the_file_folder(tmp_path, monkeypatch):
    folder = tmp_path / "conf"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    absolute = tmp_path / "abs" / "db.sqlite3"
    config = load_text(folder, f'[storage]\npath = "state/x.db"\n[llm]\ncache_dir = "{absolute.as_posix()}"\n')
    assert config.storage.path == str(folder / "state" / "x.db")
    assert config.llm.cache_dir == str(absolute)


def test_parse_config_resolves_against_cwd_or_base_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_config({}).storage.path == str(tmp_path / "data" / "dm.sqlite3")
    base = tmp_path / "b"
    assert parse_config({"storage": {"path": "x.db"}}, base_dir=base).storage.path == str(base / "x.db")


def test_secrets_come_from_the_environment(tmp_path, monkeypatch):
    config = load_text(tmp_path, '[discord]\ntoken_env = "MY_BOT_TOKEN"\n[pictures]\npassword_env = "MY_SD"\n')
    monkeypatch.delenv("MY_BOT_TOKEN", raising=False)
    monkeypatch.delenv("MY_SD", raising=False)
    assert config.discord.token() is None
    assert config.pictures.password() is None
    monkeypatch.setenv("MY_BOT_TOKEN", "abc.def.ghi")
    monkeypatch.setenv("MY_SD", "hunter2")
    assert config.discord.token() == "abc.def.ghi"
    assert config.pictures.password() == "hunter2"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-1")
    assert config.llm.api_key() == "sk-1"


def test_default_token_env(monkeypatch):
    monkeypatch.setenv("DISCORD_TOKEN", "t0ken")
    assert parse_config({}).discord.token() == "t0ken"


@pytest.mark.parametrize("text, message", [
    ("[memory]\ntopk = 3\n", "unknown key memory.topk (did you mean top_k?)"),
    ("[llm.generation]\ntemprature = 1.0\n",
     "unknown key llm.generation.temprature (did you mean temperature?)"),
    ("[memroy]\ntop_k = 3\n", "unknown section [memroy] (did you mean memory?)"),
    ("[graphics]\n", "unknown section [graphics]"),
    ('[discord]\ntoken = "abc"\n',
     "unknown key discord.token: secrets are not read from the file;"
     " set the environment variable named by discord.token_env"),
    ('[llm.generation]\ntemperature = "hot"\n',
     'llm.generation.temperature must be a number, not "hot"'),
    ("[runner]\nbatch_size = 2.5\n", "runner.batch_size must be an integer, not 2.5"),
    ("[runner]\nbatch_size = true\n", "runner.batch_size must be an integer, not true"),
    ("[llm.generation]\ntop_k = false\n", "llm.generation.top_k must be an integer, not false"),
    ("[runner]\njob_timeout_s = true\n", "runner.job_timeout_s must be a number, not true"),
    ('[pictures]\nenabled = "yes"\n', 'pictures.enabled must be true or false, not "yes"'),
    ("[runner]\nbatch_size = 100\n", "runner.batch_size must be between 1 and 64, not 100"),
    ("[memory]\nmin_score = 1.5\n", "memory.min_score must be between -1 and 1, not 1.5"),
    ("[runner]\njob_timeout_s = 0\n", "runner.job_timeout_s must be greater than 0, not 0"),
    ("[discord]\ndev_guild_id = -1\n", "discord.dev_guild_id must be at least 0, not -1"),
    ("[runner]\nmax_pending_per_channel = 10\nmax_pending_total = 5\n",
     "runner.max_pending_total must be at least runner.max_pending_per_channel (10), not 5"),
    ("[pictures]\nwidth = 500\n", "pictures.width must be a multiple of 8, not 500"),
    ('[pictures]\nurl = "127.0.0.1:7860"\n',
     'pictures.url must be an http:// or https:// URL, not "127.0.0.1:7860"'),
    ('[llm]\nbackend = "llama"\n',
     'llm.backend must be one of "auto", "transformers", "openai", "auto-gptq", "llama.cpp", not "llama"'),
    ('[llm]\nbackend = "openai"\n',
     'llm.base_url must be the model server\'s address (e.g. "http://127.0.0.1:11434/v1") when backend = "openai"'),
    ('[llm.server]\napi = "responses"\n', 'llm.server.api must be one of "chat", "completions", not "responses"'),
    ('[llm]\ndevice = "gpu"\n',
     'llm.device must be "auto", "cpu", "cuda", "cuda:N" or "mps", not "gpu"'),
    ('[llm]\nmodel = ""\n', "llm.model must not be empty"),
    ('[discord]\nooc_prefixes = ["((", ""]\n',
     'discord.ooc_prefixes must be a list of non-empty strings, not ["((", ""]'),
    ("[llm.generation]\ntop_p = 1.5\n", "llm.generation.top_p=1.5 is out of range"),
    ("[llm]\ngeneration = 3\n", "llm.generation must be a table, not 3"),
    ("runner = 3\n", "runner must be a table, not 3"),
    ("[llm]\ncontext_tokens = 256\n[llm.generation]\nmax_new_tokens = 300\n",
     "llm.generation.max_new_tokens must be less than llm.context_tokens (256), not 300"),
    ('[translation]\nprovider = "google"\n',
     'translation.provider must be one of "none", "yandex", "llm", "libretranslate", not "google"'),
    ('[translation]\nprovider = "libretranslate"\n',
     'translation.url must be the LibreTranslate server\'s address when provider = "libretranslate"'),
    ('[translation]\nurl = "localhost:5000"\n',
     'translation.url must be an http:// or https:// URL, or empty, not "localhost:5000"'),
    ("[translation]\npause_after = 0\n", "translation.pause_after must be between 1 and 100, not 0"),
    ('[translation]\napi_key = "k"\n', "unknown key translation.api_key: secrets are not read from the file;"
     " set the environment variable named by translation.api_key_env"),
])
def test_errors_are_one_line_naming_the_key(tmp_path, text, message):
    assert error_of(tmp_path, text) == message


def test_env_name_error_does_not_echo_the_value(tmp_path):
    message = error_of(tmp_path, '[discord]\ntoken_env = "MTIz.secret.token"\n')
    assert message.startswith("discord.token_env must be the name of an environment variable")
    assert "secret.token" not in message


def test_bad_toml_syntax_names_the_file(tmp_path):
    message = error_of(tmp_path, "[runner]\nbatch_size 4\n")
    assert message.startswith("invalid TOML: ")
    assert "line 2" in message


def test_missing_explicit_file_is_an_error(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found$"):
        load_config(missing)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(missing))


def test_parse_config_uses_the_source_name():
    with pytest.raises(ConfigError, match=r"^<config>: unknown key runner\.size"):
        parse_config({"runner": {"size": 1}})
    with pytest.raises(ConfigError, match=r"^settings: runner\.batch_size must be"):
        parse_config({"runner": {"batch_size": 0}}, "settings")


def test_config_is_frozen():
    config = parse_config({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.runner.batch_size = 2  # type: ignore[misc]
    assert os.path.isabs(config.storage.path)


def test_cpu_threads_reach_torch(tmp_path):
    import torch

    from bot.services import set_cpu_threads

    path = tmp_path / "config.toml"
    path.write_text("[llm]\nthreads = 1\n")
    config = load_config(str(path))
    before = torch.get_num_threads()
    try:
        set_cpu_threads(config.llm.threads)
        assert config.llm.threads == 1 and torch.get_num_threads() == 1
        set_cpu_threads(0)  # 0 leaves torch's choice alone
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
