"""Rounds: the DM narrates by itself when every active player has acted, or when the round's timer runs
out after its first action (off by default, per campaign: `rounds`, `round_timeout`, `round_window`).

Active players are those who wrote an action within the campaign's last `round_window` turns, those
who joined with /dm join, and whoever has an action pending now; never those who stepped away with
/dm leave. A roll the DM asked for (a marker in the last turn) is waited for until its player makes it.
In a fight the round follows the order: it waits for the player whose turn it is (their turn passes when
the timer runs out), and the DM narrates the NPCs' turns around theirs. The keeper holds no Discord: it is told when actions and turns happen, and calls back to
narrate a turn and to show who the round waits for. A round being narrated takes no new actions:
they stay pending and open the next round once the narration is done.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace
from typing import AsyncIterator, Awaitable, Callable

from engine.game.combat import fight_from_json
from engine.records import Campaign
from engine.store import Store

log = logging.getLogger(__name__)
CLOCK_SLACK_S = 0.05  # the event loop may wake a sleeper a clock tick early


@dataclass(frozen=True)
class RoundState:
    number: int  # the turn this round becomes
    acted: tuple[str, ...]  # who has an action pending, in the order they acted
    waiting: tuple[str, ...]  # active players without one
    deadline: float | None = None  # the event loop's time when the timer runs out
    passing: str | None = None  # in a fight, the player whose turn passes if the timer runs out first

    @property
    def complete(self) -> bool:
        return bool(self.acted) and not self.waiting

    def line(self, now: float, when: Callable[[float], str] | None = None) -> str:
        """"Round 4: waiting for Bram and Mira (the DM narrates in 1 min 30 s if they do not act)";
        `when` writes the time left (Discord shows a live countdown)."""
        if not self.acted:
            return f"Round {self.number}: no action yet; the round starts with the first one."
        if not self.waiting:
            return f"Round {self.number}: everyone has acted."
        left = None if self.deadline is None else self.deadline - now
        timer = "" if left is None else (
            f" (the DM narrates {when(left) if when else 'in ' + duration(left)} if they do not act)")
        return f"Round {self.number}: waiting for {names(self.waiting)}{timer}."


def names(items: tuple[str, ...]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, seconds = divmod(seconds, 60)
    return " ".join(part for part in (f"{minutes} min" if minutes else "", f"{seconds} s" if seconds else "")
                    if part) or "0 s"


async def round_state(store: Store, campaign: Campaign, window: int) -> RoundState:
    """Who the campaign's current round has heard from, and who it still waits for."""
    active: dict[int, str] = {}
    turns = await store.recent_turns(campaign.id, window)  # window >= 1: the last turn is among them
    for turn in turns:
        for action in turn.actions:
            active[action.author_id] = action.author_name
    for author, (name, joined) in (await store.players(campaign.id)).items():
        if joined:
            active[author] = name
        else:
            active.pop(author, None)
    acted: dict[int, str] = {}
    for action in await store.pending_actions(campaign.id):
        acted.setdefault(action.author_id, action.author_name)
    # The rolls the DM asked for in the last turn wait for their players, whatever else they did.
    asked = {r["author"]: r["name"] for r in ((turns[-1].effects or {}).get("requests", []) if turns else [])
             if "rolled" not in r}
    fight = await store.fight(campaign.id)
    up = fight_from_json(fight).player_up() if fight else None
    if up is not None:  # in a fight the round follows the order: it waits for the player whose turn it is
        active = {up.author: up.name} if up.author is not None else {}
    waiting = tuple(name for author, name in active.items() if author not in acted and author not in asked)
    waiting += tuple(f"{name}'s roll" for name in asked.values())
    return RoundState((turns[-1].number if turns else 0) + 1, tuple(acted.values()), waiting,
                      passing=up.name if up is not None and up.author not in acted else None)


@dataclass(frozen=True)
class RoundRules:
    enabled: bool
    timeout_s: int  # 0: no timer, the round waits for everyone
    window: int  # turns in which a player's action makes them active


Narrate = Callable[[Campaign, str], Awaitable[bool]]  # narrates a turn of the pending actions (why it did); False: it failed
Show = Callable[[Campaign, "RoundState | None"], Awaitable[None]]  # who the round waits for; None: it closed


class RoundKeeper:
    """Narrates a campaign's round when every active player acted or its timer ran out, and says who it waits for."""
    def __init__(self, store: Store, rules: Callable[[Campaign], RoundRules], narrate: Narrate, show: Show) -> None:
        self.store, self._rules, self._narrate, self._show = store, rules, narrate, show
        self._timers: dict[int, tuple[float, asyncio.Task]] = {}  # campaign id -> (deadline, its task)
        self._busy: dict[int, int] = {}  # campaign id -> turns being narrated (by the keeper or on request)
        self._locks: dict[int, asyncio.Lock] = {}
        self._shown: set[int] = set()  # campaigns whose waiting note is up
        # Campaigns whose round narration failed (the table was told): the round is not narrated again until
        # something changes or someone asks, so a model that writes nothing never loops.
        self._stalled: set[int] = set()
        self._tasks: set[asyncio.Task] = set()

    def deadline(self, campaign_id: int) -> float | None:
        timer = self._timers.get(campaign_id)
        return timer[0] if timer else None

    async def state(self, campaign: Campaign) -> RoundState | None:
        """The campaign's round as it stands, with its timer; None when rounds are off."""
        rules = self._rules(campaign)
        if not rules.enabled:
            return None
        return replace(await round_state(self.store, campaign, rules.window), deadline=self.deadline(campaign.id))

    async def check(self, campaign_id: int) -> None:
        """Something changed (an action came, went or was edited, a turn ended, a setting changed)."""
        self._stalled.discard(campaign_id)
        await self._recheck(campaign_id)

    async def _recheck(self, campaign_id: int) -> None:
        async with self._locks.setdefault(campaign_id, asyncio.Lock()):
            try:
                await self._decide(campaign_id)
            except Exception:  # a round that cannot be decided now is decided at the next change
                log.exception("round of campaign %d not decided", campaign_id)

    @contextlib.asynccontextmanager
    async def narrating(self, campaign_id: int) -> AsyncIterator[None]:
        """Around every turn narrated (asked for with /dm continue or started here): the round closes,
        actions that come meanwhile wait for the next one, which is decided when this turn is done."""
        self._enter(campaign_id)
        try:
            await self._close(campaign_id)
            yield
        finally:
            self._leave(campaign_id)

    def _enter(self, campaign_id: int) -> None:
        self._busy[campaign_id] = self._busy.get(campaign_id, 0) + 1
        self._cancel_timer(campaign_id)

    def _leave(self, campaign_id: int) -> None:
        self._busy[campaign_id] -= 1
        if not self._busy[campaign_id]:
            del self._busy[campaign_id]
            self._spawn(self._recheck(campaign_id))

    async def _decide(self, campaign_id: int) -> None:
        campaign = await self.store.get_campaign(campaign_id)
        rules = self._rules(campaign) if campaign is not None and campaign.active else None
        on = rules is not None and rules.enabled
        if on and self._busy.get(campaign_id):
            return  # narrating: whatever came waits for the next round
        state = await round_state(self.store, campaign, rules.window) if on else None
        if state is None:  # rounds off, or the campaign ended
            self._cancel_timer(campaign_id)
            await self._close(campaign_id)
            return
        if campaign_id in self._stalled:  # its narration failed: the next change or /dm continue goes on
            return
        if not state.acted:  # nobody has acted (yet, or any more: the only action was withdrawn)
            self._cancel_timer(campaign_id)
            if campaign_id in self._shown:  # the note says so, and the next action edits the same note
                await self._show(campaign, state)
            return
        now = asyncio.get_running_loop().time()
        deadline = self.deadline(campaign_id)
        if deadline is None and rules.timeout_s > 0:  # the round's first action starts its timer
            deadline = now + rules.timeout_s
            self._timers[campaign_id] = (deadline, self._spawn(self._ring(campaign_id, rules.timeout_s)))
        if state.complete or (deadline is not None and now >= deadline - CLOCK_SLACK_S):
            self._enter(campaign_id)  # now, under the lock: no second check starts this round again
            why = ("everyone has acted" if state.complete else f"{state.passing}'s turn passes" if state.passing
                   else "the round's time ran out")
            self._spawn(self._narrate_round(campaign, why))
            return
        await self._show(campaign, replace(state, deadline=deadline))
        self._shown.add(campaign_id)

    async def _narrate_round(self, campaign: Campaign, why: str) -> None:
        narrated = False
        try:
            await self._close(campaign.id)
            narrated = await self._narrate(campaign, why)
        except Exception:
            log.exception("round of campaign %d not narrated", campaign.id)
        finally:
            if not narrated:
                self._stalled.add(campaign.id)
            self._leave(campaign.id)

    async def _ring(self, campaign_id: int, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.check(campaign_id)  # the deadline, still set, has passed: the round is narrated

    def _cancel_timer(self, campaign_id: int) -> None:
        deadline_task = self._timers.pop(campaign_id, None)
        if deadline_task is not None and deadline_task[1] is not asyncio.current_task():
            deadline_task[1].cancel()

    async def _close(self, campaign_id: int) -> None:
        if campaign_id in self._shown:
            self._shown.discard(campaign_id)
            campaign = await self.store.get_campaign(campaign_id)
            if campaign is not None:
                await self._show(campaign, None)

    def _spawn(self, coroutine: Awaitable[None]) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._timers.clear()
