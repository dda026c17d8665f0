"""A campaign's settings: the bot's defaults, the campaign's overrides, and the checks every value passes."""
from __future__ import annotations

from dataclasses import dataclass

from engine.errors import BadInput
from engine.generation import GenerationSettings
from engine.records import Campaign
from engine.table.rounds import RoundRules

# Every text a player or an admin hands the table is checked here, against these limits, with one message style.
FACT_MAX_CHARS = 1000  # a pinned fact goes into every prompt: keep it a fact, not a chapter
PREMISE_MAX_CHARS = 1000  # the premise and the style stand in every prompt too: a paragraph, not a chapter
NOTE_MAX_CHARS = 300  # the author's note too, and close to the end where it weighs most
CAMPAIGN_TEXTS = ("premise", "style", "author_note")  # texts, not numbers: kept in the model's language
TEXT_LIMITS = {"premise": PREMISE_MAX_CHARS, "style": PREMISE_MAX_CHARS, "author_note": NOTE_MAX_CHARS}


@dataclass(frozen=True)
class NarratorSettings:
    """The bot's defaults for every campaign (config.toml)."""
    generation: GenerationSettings
    context_tokens: int = 2048
    top_k: int = 5
    min_score: float = 0.25
    summarize_every: int = 6
    recent_turns: int = 8
    action_max_chars: int = 1000
    summary_max_tokens: int = 120
    picture_spoiler: bool = True
    recap_after_hours: float = 12.0  # the first turn after a pause this long offers /dm recap (0: never)


@dataclass(frozen=True)
class CampaignSettings:
    """What one campaign plays with: the defaults with its own overrides."""
    generation: GenerationSettings
    summarize_every: int
    picture_spoiler: bool
    picture_seed: int  # -1: a new seed for every picture
    author_note: str = ""  # a standing direction near the end of every prompt ("keep it grim")
    rounds: RoundRules = RoundRules(False, 120, 3)

    def listing(self) -> dict[str, object]:
        """Every number and switch, by the name /dm settings takes (texts aside)."""
        return {**self.generation.to_dict(), "summarize_every": self.summarize_every,
                "picture_spoiler": self.picture_spoiler, "picture_seed": self.picture_seed,
                "rounds": self.rounds.enabled, "round_timeout": self.rounds.timeout_s,
                "round_window": self.rounds.window}


def setting_names() -> list[str]:
    """Every setting /dm settings changes, texts first."""
    return ["language", *CAMPAIGN_TEXTS, *GenerationSettings.names(), "summarize_every", "picture_spoiler",
            "picture_seed", "rounds", "round_timeout", "round_window"]


def check_text(name: str, text: str, limit: int) -> str:
    """`text` stripped, or BadInput when it is longer than `limit`: refused, never silently cut."""
    text = text.strip()
    if len(text) > limit:
        raise BadInput(f"{name} is at most {limit} characters (this one has {len(text)})")
    return text


def _check(name: str, value: object, kind: type, low: int = 0, high: int = 0) -> None:
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not ok or (kind is int and not low <= value <= high):  # type: ignore[operator]
        wanted = "true or false" if kind is bool else f"a whole number from {low} to {high}"
        raise BadInput(f"{name} must be {wanted}, not {value!r}")


def campaign_settings(defaults: NarratorSettings, campaign: Campaign) -> CampaignSettings:
    """The campaign's settings, its overrides checked (BadInput names the first bad one)."""
    overrides = dict(campaign.settings)
    every = overrides.pop("summarize_every", defaults.summarize_every)
    spoiler = overrides.pop("picture_spoiler", defaults.picture_spoiler)
    seed = overrides.pop("picture_seed", -1)
    note = overrides.pop("author_note", "")
    rounds = RoundRules(overrides.pop("rounds", False), overrides.pop("round_timeout", 120),
                        overrides.pop("round_window", 3))
    _check("rounds", rounds.enabled, bool)
    _check("round_timeout", rounds.timeout_s, int, 0, 7 * 24 * 3600)
    _check("round_window", rounds.window, int, 1, 100)
    _check("summarize_every", every, int, 0, 1000)
    _check("picture_spoiler", spoiler, bool)
    _check("picture_seed", seed, int, -1, 2**32 - 1)
    if not isinstance(note, str) or len(note) > NOTE_MAX_CHARS:
        raise BadInput(f"author_note must be a text of at most {NOTE_MAX_CHARS} characters")
    return CampaignSettings(defaults.generation.with_overrides(overrides), every, spoiler, seed, note, rounds)
