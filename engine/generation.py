"""Generation settings (the full set from seed 003), validated, with per-campaign overrides."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from engine.errors import BadInput


@dataclass(frozen=True)
class GenerationSettings:
    """The sampling settings a generate call takes (the seed article's full set), checked for range."""
    max_new_tokens: int = 200
    min_new_tokens: int = 0
    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    num_beams: int = 1
    repetition_penalty: float = 1.1
    no_repeat_ngram_size: int = 0
    do_sample: bool = True

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            want = {"int": int, "float": (int, float), "bool": bool}[f.type]
            if isinstance(value, bool) != (f.type == "bool") or not isinstance(value, want):
                raise BadInput(f"{f.name} must be {f.type}, not {value!r}")
        checks = {
            "max_new_tokens": 1 <= self.max_new_tokens <= 4096,
            "min_new_tokens": 0 <= self.min_new_tokens <= self.max_new_tokens,
            "temperature": 0.0 < self.temperature <= 5.0,
            "top_k": 0 <= self.top_k <= 1000,
            "top_p": 0.0 < self.top_p <= 1.0,
            "num_beams": 1 <= self.num_beams <= 16,
            "repetition_penalty": 0.5 <= self.repetition_penalty <= 5.0,
            "no_repeat_ngram_size": 0 <= self.no_repeat_ngram_size <= 20,
        }
        for name, ok in checks.items():
            if not ok:
                raise BadInput(f"{name}={getattr(self, name)!r} is out of range")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def with_overrides(self, overrides: Mapping[str, Any]) -> "GenerationSettings":
        """A copy with some settings replaced; unknown names are refused with a clear message."""
        unknown = sorted(set(overrides) - set(self.names()))
        if unknown:
            raise BadInput(f"unknown generation setting(s): {', '.join(unknown)}")
        if not overrides:
            return self
        current = dataclasses.asdict(self)
        for name, value in overrides.items():
            # TOML and JSON write 1 for 1.0: accept ints where floats are meant.
            if isinstance(current[name], float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            current[name] = value
        return GenerationSettings(**current)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
