"""The prompt, built within a token budget counted in the model's own tokens.

Order: instructions + premise, pinned facts, story cards whose keys were mentioned, recalled memories, the
party, the active quests, the fight,
as much recent story as fits (oldest dropped first), then the pending actions, each with its player's
name. A turn is always possible:
the pending actions take at most half the budget (the newest wait for the next turn), and when even
one does not fit beside the instructions, it is shortened.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from engine.table.cards import Triggered
from engine.errors import BadInput
from engine.memory import Recalled
from engine.records import Action, Campaign, Turn
from engine.game.dice import ROLLED, ROLLS_RULE
from engine.game.markers import MARKERS_RULE
from engine.textgen.base import Prompt

INSTRUCTIONS = (
    "You are the Dungeon Master of a role-playing game played by a group. Narrate what happens next "
    "in vivid second or third person prose, a few short paragraphs. React to every player's action, "
    "keep the world consistent with what is remembered, never decide what the players' characters "
    "say or do next, and stop at a moment where the players can act."
)


@dataclass(frozen=True)
class BuiltPrompt:
    prompt: Prompt
    rendered: str
    tokens: int
    turns_used: int  # how many of the recent turns fitted
    memories_used: int
    memories: tuple[Recalled, ...] = ()  # exactly the memories, turns and actions the prompt holds
    turns: tuple[Turn, ...] = ()
    actions: tuple[Action, ...] = ()  # the oldest pending actions; the others wait for the next turn
    cards: tuple[Triggered, ...] = ()


def cut_action(text: str, limit: int) -> tuple[str, bool]:
    """An action cut at `limit` characters (at a word end), and whether it was cut."""
    text = text.strip()
    if len(text) <= limit:
        return text, False
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip() + " …", True


def _turn_text(turn: Turn) -> str:
    lines = [f"{a.author_name}: {a.text}" for a in turn.actions]
    return "\n".join([*lines, f"DM: {turn.narration}"])


def _sections(campaign: Campaign, memories: Sequence[Recalled], turns: Sequence[Turn],
              actions: Sequence[Action], extra: str, action_limit: int,
              cards: Sequence[Triggered], party: Sequence[str] = (), quests: Sequence[str] = (),
              combat: str = "") -> tuple[str, str, str]:
    system = INSTRUCTIONS
    if campaign.premise:
        system += f"\n\nThe campaign: {campaign.premise}"
    if campaign.style:
        system += f"\nStyle: {campaign.style}"
    parts = []
    pinned = [r.memory.shown for r in memories if r.score is None]
    recalled = [r.memory.shown for r in memories if r.score is not None]
    remember = [*pinned, *(t.card.text for t in cards), *recalled]  # cards after facts, before recall
    if remember:
        parts.append("Things to remember:\n" + "\n".join(f"- {line}" for line in remember))
    if party:  # the characters' sheets as they stand: the state the story must not drift from
        parts.append("The party:\n" + "\n".join(f"- {line}" for line in party))
    if quests:  # the active quests, one line each
        parts.append("Quests:\n" + "\n".join(f"- {line}" for line in quests))
    if combat:  # the fight's order and whose turns this narration tells
        parts.append(combat)
    if turns:
        parts.append("The story so far:\n" + "\n\n".join(_turn_text(t) for t in turns))
    now = [_action_line(a, action_limit) for a in actions]
    if extra.strip():
        now.append(f"(Direction for the DM: {cut_action(extra, action_limit)[0]})")
    note = str(campaign.settings.get("author_note", "")).strip()
    if note:  # near the end, where a small model heeds it most (AI Dungeon's and KoboldCpp's author's note)
        parts.append(f"Author's note: {note}")
    if any(ROLLED in a.text for a in actions):  # the dice fell already: the model narrates them, never re-rolls
        system += f"\n{ROLLS_RULE}"
    if party:  # characters with sheets: the DM asks for rolls and changes them with markers
        system += f"\n{MARKERS_RULE}"
    parts.append("What the players do now:\n" + ("\n".join(now) if now else "(nothing: the story moves on)"))
    user = "\n\n".join(parts) + "\n\nNarrate what happens next."
    # The GPT-2 family continues text rather than following instructions: give it a script to extend.
    continuation = "\n\n".join([system, *parts[:-1]]) + "\n\n" + "\n".join(now) + "\nDM:"
    return system, user, continuation


ACTION_SHARE = 0.5  # of the budget, at most, for the pending actions while others wait
SHORTEST_ACTION = 40  # characters an action is never shortened below


def build_prompt(
    campaign: Campaign, *, memories: Sequence[Recalled], turns: Sequence[Turn], actions: Sequence[Action],
    extra: str = "", render: Callable[[Prompt], str], count_tokens: Callable[[str], int], budget: int,
    action_limit: int = 1000, may_defer: bool = True, cards: Sequence[Triggered] = (), party: Sequence[str] = (),
    quests: Sequence[str] = (), combat: str = "",
) -> BuiltPrompt:
    """The fullest prompt within `budget` tokens: story goes first (oldest first), then recalled
    memories, then story cards (the last mentioned first), then pinned facts, then the quests (the newest
    first), then the party's lines; the combat block stays.
    With may_defer, the newest actions may be left for the next turn (a retry's are its own)."""
    turns, memories, actions, cards, party = list(turns), list(memories), list(actions), list(cards), list(party)
    quests = list(quests)
    while may_defer and len(actions) > 1 and _actions_tokens(actions, action_limit, count_tokens) > ACTION_SHARE * budget:
        actions.pop()  # the newest waits for the next turn: never a table locked by what it wrote
    while True:
        prompt = Prompt(*_sections(campaign, memories, turns, actions, extra, action_limit, cards, party, quests,
                                   combat))
        rendered = render(prompt)
        tokens = count_tokens(rendered)
        if tokens <= budget:
            return BuiltPrompt(prompt, rendered, tokens, len(turns), len(memories), tuple(memories), tuple(turns),
                               tuple(actions), tuple(cards))
        if turns:
            turns.pop(0)
        elif any(r.score is not None for r in memories):  # recalled ones go before pinned facts
            worst = max(i for i, r in enumerate(memories) if r.score is not None)
            memories.pop(worst)
        elif cards:
            cards.pop()
        elif memories:
            memories.pop()
        elif quests:
            quests.pop()
        elif party:
            party.pop()
        elif may_defer and len(actions) > 1:
            actions.pop()
        elif action_limit > SHORTEST_ACTION:  # one action (or the direction) too long for this budget
            action_limit = max(SHORTEST_ACTION, action_limit // 2)
        else:
            raise BadInput(
                f"the instructions and the premise alone need {tokens} tokens, more than the prompt budget of "
                f"{budget}: shorten the premise or raise llm.context_tokens"
            )


def _action_line(action: Action, limit: int) -> str:
    return f"{action.author_name}: {cut_action(action.text, limit)[0]}"


def _actions_tokens(actions: Sequence[Action], limit: int, count_tokens: Callable[[str], int]) -> int:
    return count_tokens("\n".join(_action_line(a, limit) for a in actions))
