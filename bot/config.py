"""Bot configuration: one TOML file read with `tomllib` into frozen, validated dataclasses.

Every setting is declared once, on its dataclass field, with its default and its rule; one small
table-driven reader checks a parsed TOML document against those declarations. Errors are a single
line naming the file and the dotted key. Secrets never live in the file: it names environment
variables, read by `DiscordConfig.token()`, `PicturesConfig.password()` and `LLMConfig.api_key()`.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from engine.errors import BadInput
from engine.generation import GenerationSettings

DEFAULT_CONFIG_PATH = "config.toml"


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line naming the file and the key."""


class _Invalid(Exception):
    """A value broke its rule; the message completes the sentence "<dotted.key> ..."."""


Rule = Callable[[Any, str], Any]  # (value, base folder for relative paths) -> checked value


def _show(value: Any) -> str:
    """A value as TOML would write it, on one short line."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dict):
        text = "a table"
    elif isinstance(value, (str, list)):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def _check_range(value: float, lo: float | None, hi: float | None) -> None:
    if lo is not None and hi is not None and not lo <= value <= hi:
        raise _Invalid(f"must be between {_num(lo)} and {_num(hi)}, not {_num(value)}")
    if lo is not None and value < lo:
        raise _Invalid(f"must be at least {_num(lo)}, not {_num(value)}")
    if hi is not None and value > hi:
        raise _Invalid(f"must be at most {_num(hi)}, not {_num(value)}")


def _int(lo: int | None = None, hi: int | None = None, multiple_of: int = 1) -> Rule:
    def rule(value: Any, base: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"must be an integer, not {_show(value)}")
        _check_range(value, lo, hi)
        if value % multiple_of:
            raise _Invalid(f"must be a multiple of {multiple_of}, not {value}")
        return value
    return rule


def _float(lo: float | None = None, hi: float | None = None, above: float | None = None) -> Rule:
    def rule(value: Any, base: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid(f"must be a number, not {_show(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise _Invalid(f"must be a finite number, not {_show(value)}")
        if above is not None and value <= above:
            raise _Invalid(f"must be greater than {_num(above)}, not {_num(value)}")
        _check_range(value, lo, hi)
        return value
    return rule


def _bool() -> Rule:
    def rule(value: Any, base: str) -> bool:
        if not isinstance(value, bool):
            raise _Invalid(f"must be true or false, not {_show(value)}")
        return value
    return rule


def _str(*, choices: tuple[str, ...] = (), nonempty: bool = False,
         pattern: str = "", what: str = "") -> Rule:
    def rule(value: Any, base: str) -> str:
        if not isinstance(value, str):
            raise _Invalid(f"must be a string, not {_show(value)}")
        if nonempty and not value.strip():
            raise _Invalid("must not be empty")
        if choices and value not in choices:
            raise _Invalid(f"must be one of {', '.join(map(_show, choices))}, not {_show(value)}")
        if pattern and not re.fullmatch(pattern, value):
            raise _Invalid(f"must be {what}, not {_show(value)}")
        return value
    return rule


def _env_name() -> Rule:
    """The name of an environment variable; the value is never echoed, in case it is the secret."""
    def rule(value: Any, base: str) -> str:
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise _Invalid("must be the name of an environment variable (letters, digits and _);"
                           " the value is not shown in case it is a secret")
        return value
    return rule


def _str_list() -> Rule:
    def rule(value: Any, base: str) -> tuple[str, ...]:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            raise _Invalid(f"must be a list of non-empty strings, not {_show(value)}")
        return tuple(value)
    return rule


def _path() -> Rule:
    """A file or folder; a relative one is resolved against the config file's folder."""
    def rule(value: Any, base: str) -> str:
        value = _str(nonempty=True)(value, base)
        return os.path.abspath(os.path.join(base, os.path.expanduser(value)))
    return rule


# Rules for tables declared elsewhere (GenerationSettings), chosen by the field's annotation.
_RULE_BY_TYPE: dict[str, Rule] = {"int": _int(), "float": _float(), "bool": _bool()}


def setting(default: Any, rule: Rule) -> Any:
    return field(default=default, metadata={"rule": rule})


def table(cls: type) -> Any:
    return field(default_factory=cls, metadata={"table": cls})


@dataclass(frozen=True)
class DiscordConfig:
    token_env: str = setting("DISCORD_TOKEN", _env_name())
    dev_guild_id: int = setting(0, _int(0))  # 0: commands are synced globally
    admin_role: str = setting("", _str())  # besides Manage Server
    ooc_prefixes: tuple[str, ...] = setting(("((", "//"), _str_list())
    action_max_chars: int = setting(1000, _int(50, 4000))
    shards: str = setting("off", _str(pattern=r"off|auto|[1-9]\d{0,3}", what='"off", "auto" or a number of shards'))

    def token(self) -> str | None:
        return os.environ.get(self.token_env) or None


@dataclass(frozen=True)
class StorageConfig:
    path: str = setting("data/dm.sqlite3", _path())


@dataclass(frozen=True)
class ServerConfig:
    """How the openai backend talks to its server (llm.base_url)."""
    api: str = setting("chat", _str(choices=("chat", "completions")))
    connect_timeout_s: float = setting(10.0, _float(above=0))
    read_timeout_s: float = setting(120.0, _float(above=0))
    retries: int = setting(3, _int(0, 20))
    max_concurrency: int = setting(4, _int(1, 256))
    sampling_extras: bool = setting(True, _bool())


@dataclass(frozen=True)
class LlamaCppConfig:
    """The llama.cpp backend (`make setup-llamacpp`)."""
    n_threads: int = setting(0, _int(0, 1024))  # 0: every CPU the process may use (measured: docs/backends.md)
    n_gpu_layers: int = setting(0, _int(-1, 100000))  # 0: CPU only; -1: every layer on the GPU


@dataclass(frozen=True)
class LLMConfig:
    # auto: llama.cpp on a CPU for a GGUF model when it is installed, transformers otherwise (bot/services.py)
    backend: str = setting("auto", _str(choices=("auto", "transformers", "openai", "auto-gptq", "llama.cpp")))
    model: str = setting("bundled:smollm2", _str(nonempty=True))
    device: str = setting("auto", _str(pattern=r"auto|cpu|cuda(:\d+)?|mps",
                                       what='"auto", "cpu", "cuda", "cuda:N" or "mps"'))
    dtype: str = setting("auto", _str(choices=("auto", "float32", "float16", "bfloat16")))
    threads: int = setting(0, _int(0, 1024))  # torch's CPU threads; 0: torch's own choice
    cache_dir: str = setting("data/models", _path())
    context_tokens: int = setting(2048, _int(256, 131072))
    language: str = setting("en", _str(pattern=r"[A-Za-z]{2,8}", what="a language code of 2 to 8 letters"))
    base_url: str = setting("", _str())  # the openai backend's server
    api_key_env: str = setting("OPENAI_API_KEY", _env_name())
    generation: GenerationSettings = table(GenerationSettings)
    server: ServerConfig = table(ServerConfig)
    llamacpp: LlamaCppConfig = table(LlamaCppConfig)

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None


@dataclass(frozen=True)
class MemoryConfig:
    embedder: str = setting("bundled:minilm", _str())
    top_k: int = setting(5, _int(0, 50))
    min_score: float = setting(0.25, _float(-1, 1))
    summarize_every: int = setting(6, _int(0, 1000))  # 0: never
    chunk_chars: int = setting(400, _int(100, 4000))
    recent_turns: int = setting(8, _int(1, 200))
    summarizer: str = setting("", _str())  # "": the text model
    summary_max_tokens: int = setting(120, _int(16, 1024))
    recap_after_hours: float = setting(12.0, _float(0, 24 * 365))  # 0: never offer /dm recap


@dataclass(frozen=True)
class RunnerConfig:
    max_pending_per_channel: int = setting(8, _int(1, 1000))
    max_pending_total: int = setting(64, _int(1, 100000))
    batch_size: int = setting(4, _int(1, 64))
    batch_wait_ms: int = setting(20, _int(0, 5000))
    job_timeout_s: float = setting(600.0, _float(above=0))


@dataclass(frozen=True)
class PicturesConfig:
    enabled: bool = setting(False, _bool())
    url: str = setting("http://127.0.0.1:7860", _str(pattern=r"https?://\S+", what="an http:// or https:// URL"))
    user: str = setting("", _str())
    password_env: str = setting("SD_PASSWORD", _env_name())
    steps: int = setting(20, _int(1, 150))
    width: int = setting(512, _int(64, 2048, multiple_of=8))
    height: int = setting(512, _int(64, 2048, multiple_of=8))
    cfg_scale: float = setting(7.0, _float(1, 30))
    sampler_name: str = setting("Euler a", _str())
    negative_prompt: str = setting("lowres, bad anatomy, text, watermark", _str())
    checkpoint: str = setting("", _str())
    timeout_s: float = setting(120.0, _float(above=0))
    spoiler: bool = setting(True, _bool())

    def password(self) -> str | None:
        return os.environ.get(self.password_env) or None


@dataclass(frozen=True)
class TranslationConfig:
    provider: str = setting("none", _str(choices=("none", "yandex", "llm", "libretranslate")))
    url: str = setting("", _str(pattern=r"(https?://\S+)?", what="an http:// or https:// URL, or empty"))
    api_key_env: str = setting("LIBRETRANSLATE_API_KEY", _env_name())
    timeout_s: float = setting(10.0, _float(above=0))
    cache_size: int = setting(1024, _int(0, 1000000))
    pause_after: int = setting(3, _int(1, 100))  # failures in a row before translation pauses
    pause_s: float = setting(300.0, _float(above=0))

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None


@dataclass(frozen=True)
class Config:
    discord: DiscordConfig = table(DiscordConfig)
    storage: StorageConfig = table(StorageConfig)
    llm: LLMConfig = table(LLMConfig)
    memory: MemoryConfig = table(MemoryConfig)
    runner: RunnerConfig = table(RunnerConfig)
    pictures: PicturesConfig = table(PicturesConfig)
    translation: TranslationConfig = table(TranslationConfig)


def _cross_check(cls: type, v: Mapping[str, Any]) -> str | None:
    """Rules that join two keys of one table; returns the complaint, if any."""
    if cls is RunnerConfig and v["max_pending_total"] < v["max_pending_per_channel"]:
        return (f"runner.max_pending_total must be at least runner.max_pending_per_channel"
                f" ({v['max_pending_per_channel']}), not {v['max_pending_total']}")
    if cls is LLMConfig and v["generation"].max_new_tokens >= v["context_tokens"]:
        return (f"llm.generation.max_new_tokens must be less than llm.context_tokens"
                f" ({v['context_tokens']}), not {v['generation'].max_new_tokens}")
    if cls is LLMConfig and v["backend"] == "openai" and not re.fullmatch(r"https?://\S+", v["base_url"]):
        return ('llm.base_url must be the model server\'s address (e.g. "http://127.0.0.1:11434/v1") '
                'when backend = "openai"')
    if cls is TranslationConfig and v["provider"] == "libretranslate" and not v["url"]:
        return "translation.url must be the LibreTranslate server's address when provider = \"libretranslate\""
    return None


def _unknown(key: str, dotted: str, known: Mapping[str, Any], value: Any) -> str:
    shown = key if re.fullmatch(r"[A-Za-z0-9_-]+", str(key)) else json.dumps(str(key))
    full = f"{dotted}.{shown}" if dotted else shown
    what = f"unknown section [{full}]" if not dotted and isinstance(value, dict) else f"unknown key {full}"
    if f"{key}_env" in known:
        return f"{what}: secrets are not read from the file; set the environment variable named by {full}_env"
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return what + (f" (did you mean {close[0]}?)" if close else "")


def _read_table(cls: type, data: Mapping[str, Any], dotted: str, source: str, base: str) -> Any:
    """Check one TOML table against `cls`'s fields and build it; missing keys take defaults."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{source}: {_unknown(key, dotted, known, value)}")
    values: dict[str, Any] = {}
    for name, f in known.items():
        key = f"{dotted}.{name}" if dotted else name
        if "table" in f.metadata:
            sub = data.get(name, {})
            if not isinstance(sub, dict):
                raise ConfigError(f"{source}: {key} must be a table, not {_show(sub)}")
            values[name] = _read_table(f.metadata["table"], sub, key, source, base)
            continue
        rule = f.metadata.get("rule") or _RULE_BY_TYPE[f.type]
        try:
            values[name] = rule(data.get(name, f.default), base)
        except _Invalid as exc:
            raise ConfigError(f"{source}: {key} {exc}") from None
    complaint = _cross_check(cls, values)
    if complaint:
        raise ConfigError(f"{source}: {complaint}")
    try:
        return cls(**values)
    except BadInput as exc:  # GenerationSettings checks its own ranges
        raise ConfigError(f"{source}: {dotted}.{exc}") from None


def parse_config(data: Mapping[str, Any], source: str = "<config>", *,
                 base_dir: str | os.PathLike[str] | None = None) -> Config:
    """Validate an already parsed TOML document; relative paths resolve against `base_dir` (or cwd)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the configuration must be a table, not {_show(data)}")
    base = os.path.abspath(base_dir if base_dir is not None else os.getcwd())
    return _read_table(Config, dict(data), "", source, base)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read the TOML file at `path`; with None, `config.toml` in the current folder if there is one,
    otherwise all defaults. A path given explicitly must exist."""
    if path is None:
        if not os.path.isfile(DEFAULT_CONFIG_PATH):
            return parse_config({}, "<defaults>")
        path = DEFAULT_CONFIG_PATH
    source = os.fspath(path)
    try:
        with open(source, "rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the config file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: the config file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {' '.join(str(exc).split())}") from None
    return parse_config(data, source, base_dir=os.path.dirname(os.path.abspath(source)))
