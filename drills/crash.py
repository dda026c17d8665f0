"""Crash drill: a child plays turns on a real SQLite file and is SIGKILLed at random moments.

What is real: the child builds the engine the way bot/services.py does (Store on one SQLite file,
ModelWorker threads, MemoryBank, Narrator, Runner with its PromptGuard) and plays through the real
turn path: Narrator.add_action, a "turn" job, commit_turn, and a summary every 2 turns.
What is scripted, and why: the text model is tests/scripted_backend.py's ScriptedBackend (short,
distinct replies, `token_delay` per word so generating and summarising take measurable time) and,
by default, the embedder is a hashed bag of words: a crash drill tests what reaches the disk, not
what a model writes, and real models would make every one of the ~20 child starts cost seconds.
`--embedder minilm` uses the bundled all-MiniLM-L6-v2 instead (about 5 s more per start).

The child prints `ACK <id> <text>` once the store has acknowledged an action, and marks the
moments `PHASE generate|summary` (the model starts a turn's narration or a summary), `PHASE stored`
(= the ACK) and `PHASE committed <turn> <action ids>` (commit_turn returned). The parent picks a
moment kind (all four covered, then at random from a seeded RNG), its n-th occurrence and a delay
within it, and SIGKILLs the child there. After each kill, with plain sqlite3: integrity checks
(PRAGMA integrity_check, foreign keys, the FTS5 index); every acknowledged action in a committed
turn or still pending, with its text; every announced commit present; every turn with a narration
and its exact memories. Then the next child starts on the same file and must find the same
campaign, turns and pending actions, and its first turn must consume those pending actions. A last
child resumes, narrates what is pending and exits cleanly: nothing may remain pending.

Usage: python drills/crash.py [--kills 15] [--seed 1] [--embedder hash|minilm]
The last line of stdout is one JSON object; the exit code is 1 if anything was lost or broken.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, when run as drills/crash.py
from bench.common import ROOT, emit, use_paths  # noqa: E402 (after the path)

MOMENTS = ("generate", "summary", "stored", "committed")
CHANNEL = -424242  # the drill's campaign channel; negative like terminal play, never a Discord id
TOKENS = 24        # words per narration and per summary
TOKEN_DELAY = 0.01  # seconds per word: a narration takes ~0.25 s, long enough to be killed inside
PLAYERS = ("Bram", "Ilsa", "Oren")
LIFE_TIMEOUT_S = 60.0


# ----------------------------------------------------------------- the child: plays until killed

class HashEmbedder:
    """A deterministic stand-in for the sentence embedder: hashed words, L2-normalised float32."""

    id = "crash-drill-hash"
    dim = 64

    def encode(self, texts):
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row, 0] = 1.0  # never a zero vector, whatever the text
            for word in re.findall(r"\w+", text.lower()):
                h = zlib.crc32(word.encode())
                out[row, 1 + h % (self.dim - 1)] += 1.0 if h & 1 << 31 else -1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def common_words(self):
        return None


_SCENE = ("The torches flicker as the party moves on. A door creaks somewhere below. "
          "Rain drums on the roof and the old keeper watches them in silence.").split()
_SUMMARY = "In short the party explored the tavern cellar and found new clues about the lost key.".split()


def drill_reply(text: str, settings) -> list[str]:
    """Distinct per prompt (so every turn's narration is a new memory), free of speaker lines."""
    from engine.memory.summarize import SUMMARY_INSTRUCTIONS

    words = _SUMMARY if text.startswith(SUMMARY_INSTRUCTIONS) else _SCENE
    tag = f"[{zlib.crc32(text.encode()):08x}]"
    return [tag, *(words[k % len(words)] for k in range(settings.max_new_tokens - 1))]


def _say(lock: threading.Lock, line: str) -> None:
    with lock:  # the event loop and the model thread both write
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


async def child_main(db: str, life: int, seed: int, final: bool, embedder_kind: str) -> int:
    use_paths(tests=True)  # scripted_backend, by module name (see tests/conftest.py)
    from scripted_backend import ScriptedBackend

    from engine.generation import GenerationSettings
    from engine.jobs.job import Job
    from engine.memory.bank import MemoryBank
    from bot.services import build_table
    from engine.table import NarratorSettings
    from engine.jobs.guard import PromptGuard
    from engine.jobs.runner import Runner
    from engine.store.campaigns import Store
    from engine.memory.summarize import SUMMARY_INSTRUCTIONS
    from engine.translation.translate import Translation
    from engine.jobs.worker import ModelWorker

    lock = threading.Lock()

    class PhasedBackend(ScriptedBackend):
        def generate_batch(self, requests, on_token, should_stop):
            summary = any(r.text.startswith(SUMMARY_INSTRUCTIONS) for r in requests)
            _say(lock, f"PHASE {'summary' if summary else 'generate'}")
            return super().generate_batch(requests, on_token, should_stop)

    if embedder_kind == "minilm":
        from engine.memory.embeddings import Embedder
        embed = Embedder.load("bundled:minilm")
    else:
        embed = HashEmbedder()
    backend = PhasedBackend(token_delay=TOKEN_DELAY, reply_for=drill_reply)
    store = await Store.open(db)
    text_worker = ModelWorker("text", lambda: backend)
    embed_worker = ModelWorker("embedder", lambda: embed)
    await asyncio.gather(text_worker.start(), embed_worker.start())
    memory = MemoryBank(store, embed_worker, embed.id, chunk_chars=200)
    context_tokens = 2048
    table = build_table(store, memory, backend, NarratorSettings(
        generation=GenerationSettings(max_new_tokens=TOKENS, do_sample=False), context_tokens=context_tokens,
        summarize_every=2, summary_max_tokens=TOKENS), Translation(None, "en"))
    runner = Runner(table.jobs, text_worker, batch_wait_ms=5,
                    guard=PromptGuard(backend.count_tokens, context_tokens))

    commit_turn = store.commit_turn

    async def announced_commit(campaign_id, action_ids, *args, **kwargs):
        turn, added = await commit_turn(campaign_id, action_ids, *args, **kwargs)
        _say(lock, f"PHASE committed {turn.number} {json.dumps([a.id for a in turn.actions])}")
        return turn, added

    store.commit_turn = announced_commit  # the moment right after a commit, as the narrator makes it

    campaign = await store.campaign_for_channel(CHANNEL) or await store.create_campaign(
        CHANNEL, "crash drill", "A fantasy adventure that begins in a small tavern at the edge of a dark forest.")
    pending = [a.id for a in await store.pending_actions(campaign.id)]
    _say(lock, f"RESUME {campaign.id} {await store.turn_count(campaign.id)} {json.dumps(pending)}")

    async def turn() -> None:
        await runner.submit(Job(campaign.id, campaign.channel_id, "turn")).result()

    if pending:  # what waited when the last child died is narrated first
        await turn()
    if final:
        await runner.close()  # lets the turn's summary finish
        await text_worker.stop()
        await embed_worker.stop()
        await store.close()
        _say(lock, "DONE")
        return 0
    rng = random.Random(seed * 100_003 + life)
    for n in range(500):  # the parent kills long before; the cap keeps a forgotten child finite
        for k in range(rng.randint(1, 3)):
            name = rng.choice(PLAYERS)
            text = f"{name} searches crate {life}-{n}-{k} in the cellar for the lost key."
            action, _ = await table.edits.add_action(campaign.id, PLAYERS.index(name) + 1, name, text)
            _say(lock, f"ACK {action.id} {text}")
        await turn()
    _say(lock, "DONE")
    return 0


# ----------------------------------------------------------------- the parent: kills and checks

@dataclass
class Life:
    """What one child said before it died."""
    resume: tuple[int, int, list[int]] | None = None
    acked: dict[int, str] = field(default_factory=dict)
    commits: dict[int, list[int]] = field(default_factory=dict)  # turn number -> action ids
    first_commit: list[int] | None = None
    killed: bool = False
    timed_out: bool = False
    returncode: int | None = None
    stderr: str = ""


def run_child(db: str, life: int, seed: int, embedder: str, moment: str | None, nth: int, delay: float,
              workdir: Path) -> Life:
    """Start a child on `db`; SIGKILL it `delay` s after the `nth` time it reaches `moment` (None:
    let it finish). Every line it wrote before dying is read, so no acknowledgement is missed."""
    args = [sys.executable, str(Path(__file__).resolve()), "--child", "--db", db, "--life", str(life),
            "--seed", str(seed), "--embedder", embedder] + (["--final"] if moment is None else [])
    err_path = workdir / f"child-{life}.err"
    result = Life()
    with open(err_path, "w") as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True, cwd=str(ROOT))

        def kill(timed_out: bool = False) -> None:
            if proc.poll() is None:
                result.killed, result.timed_out = not timed_out, timed_out
                proc.send_signal(signal.SIGKILL)  # os.kill(pid), unless the child was reaped already

        watchdog = threading.Timer(LIFE_TIMEOUT_S, kill, kwargs={"timed_out": True})
        watchdog.start()
        seen, fired, later = 0, False, None
        try:
            for line in proc.stdout:
                word, _, rest = line.rstrip("\n").partition(" ")
                if word == "RESUME":
                    campaign, turns, pending = rest.split(" ", 2)
                    result.resume = (int(campaign), int(turns), json.loads(pending))
                elif word == "ACK":
                    action_id, _, text = rest.partition(" ")
                    result.acked[int(action_id)] = text
                elif word == "PHASE" and rest.startswith("committed"):
                    _, number, ids = rest.split(" ", 2)
                    result.commits[int(number)] = json.loads(ids)
                    if result.first_commit is None:
                        result.first_commit = json.loads(ids)
                phase = "stored" if word == "ACK" else rest.split(" ")[0] if word == "PHASE" else None
                if moment is not None and not fired and phase == moment:
                    seen += 1
                    if seen == nth:
                        fired = True
                        if delay <= 0:
                            kill()
                        else:
                            later = threading.Timer(delay, kill)
                            later.start()
        finally:
            proc.wait()
            watchdog.cancel()
            if later is not None:
                later.cancel()
    result.returncode = proc.returncode
    result.stderr = err_path.read_text()[-2000:]
    return result


@dataclass
class DbState:
    campaigns: list[int]
    turns: int
    pending: list[int]
    problems: dict[str, list[str]]
    lost_ids: set[int]


def check_database(db: str, acked: dict[int, str], commits: dict[int, list[int]]) -> DbState:
    """Everything a crash must not break, read with plain sqlite3 (which also recovers the WAL)."""
    problems: dict[str, list[str]] = {"integrity": [], "lost": [], "turns_lost": [], "broken_turns": []}
    conn = sqlite3.connect(db)
    try:
        verdict = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if verdict != ["ok"]:
            problems["integrity"].append(f"integrity_check: {verdict[:5]}")
        if bad := conn.execute("PRAGMA foreign_key_check").fetchall():
            problems["integrity"].append(f"foreign_key_check: {bad[:5]}")
        try:  # the word index must match the memories it follows
            conn.execute("INSERT INTO memories_fts (memories_fts, rank) VALUES ('integrity-check', 1)")
        except sqlite3.DatabaseError as exc:
            problems["integrity"].append(f"memories_fts: {exc}")
        conn.rollback()
        campaigns = [row[0] for row in conn.execute("SELECT id FROM campaigns WHERE channel_id = ?", (CHANNEL,))]
        turns = {number: (turn_id, narration) for turn_id, number, narration in conn.execute(
            "SELECT t.id, t.number, t.narration FROM turns t JOIN campaigns c ON c.id = t.campaign_id"
            " WHERE c.channel_id = ?", (CHANNEL,))}
        actions = {row[0]: row[1:] for row in conn.execute("SELECT id, text, turn_id, author_name FROM actions")}
        by_turn_id = {turn_id: number for number, (turn_id, _) in turns.items()}
        for action_id, text in acked.items():
            row = actions.get(action_id)
            if row is None:
                problems["lost"].append(f"action {action_id} is gone: {text!r}")
            elif row[0] != text:
                problems["lost"].append(f"action {action_id} now says {row[0]!r}, not {text!r}")
            elif row[1] is not None and row[1] not in by_turn_id:
                problems["lost"].append(f"action {action_id} points at turn id {row[1]}, which does not exist")
        for number, ids in commits.items():
            if number not in turns:
                problems["turns_lost"].append(f"turn {number} was committed and is gone")
            elif sorted(i for i, row in actions.items() if row[1] == turns[number][0]) != sorted(ids):
                problems["turns_lost"].append(f"turn {number} no longer holds actions {ids}")
        if sorted(turns) != list(range(1, len(turns) + 1)):
            problems["broken_turns"].append(f"turn numbers are not 1..n: {sorted(turns)}")
        exact = {}
        for number, speaker in conn.execute(
                "SELECT turn_from, speaker FROM memories WHERE kind = 'exact' AND turn_from = turn_to"
                " AND vector IS NOT NULL"):
            exact.setdefault(number, set()).add(speaker)
        for number, (turn_id, narration) in sorted(turns.items()):
            if not narration.strip():
                problems["broken_turns"].append(f"turn {number} has no narration")
            speakers = {row[2] for row in actions.values() if row[1] == turn_id}
            if None not in exact.get(number, set()) or not speakers <= exact.get(number, set()):
                problems["broken_turns"].append(f"turn {number} lacks its memories (has {exact.get(number)})")
        for turn_to, in conn.execute("SELECT turn_to FROM memories WHERE kind = 'summary'"):
            if turn_to not in turns:
                problems["broken_turns"].append(f"a summary reaches turn {turn_to}, which does not exist")
        pending = sorted(i for i, row in actions.items() if row[1] is None)
    finally:
        conn.close()
    lost = {int(problem.split()[1]) for problem in problems["lost"]}
    return DbState(campaigns, len(turns), pending, problems, lost)


def _plan(kills: int, rng: random.Random) -> list[str]:
    """Every moment kind at least once (when kills allow), the rest at random, in random order."""
    plan = list(MOMENTS)[:kills] + [rng.choice(MOMENTS) for _ in range(kills - len(MOMENTS))]
    rng.shuffle(plan)
    return plan


def run_drill(kills: int = 15, seed: int = 1, embedder: str = "hash", workdir: str | Path | None = None,
              tamper: Callable[[str], None] | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Kill a child `kills` times, check after each kill, then let one last child finish; the figures.
    `tamper(db)` runs before every check (the drill's own test breaks the file with it). Without a
    `workdir` the files go to a temp folder, removed when all went well and named in the log if not."""
    rng = random.Random(seed)
    folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="drill-crash-"))
    folder.mkdir(parents=True, exist_ok=True)
    db = str(folder / "dm.sqlite3")
    say = log or (lambda message: print(message, file=sys.stderr, flush=True))
    acked: dict[int, str] = {}
    commits: dict[int, list[int]] = {}
    by_moment = {m: 0 for m in MOMENTS}
    counts = {"integrity": 0, "lost": set(), "turns_lost": 0, "broken_turns": 0}
    resume_failures, child_errors, resumed_consumed = [], [], 0
    expected: DbState | None = None
    campaign_id: int | None = None

    def check_resume(life: Life, label: str) -> None:
        nonlocal campaign_id, resumed_consumed
        if life.resume is None:
            resume_failures.append(f"{label}: the child never reported its state")
            return
        got_campaign, got_turns, got_pending = life.resume
        campaign_id = campaign_id or got_campaign
        if expected is not None:
            want = (campaign_id, expected.turns, expected.pending)
            if (got_campaign, got_turns, sorted(got_pending)) != want:
                resume_failures.append(f"{label}: resumed as {life.resume}, expected {want}")
            if expected.pending and life.first_commit is not None:
                if set(expected.pending) <= set(life.first_commit):
                    resumed_consumed += len(expected.pending)
                else:
                    resume_failures.append(f"{label}: first turn took {life.first_commit},"
                                           f" not the pending {expected.pending}")

    def check(label: str) -> DbState:
        state = check_database(db, acked, commits)
        p = state.problems
        counts["integrity"] += bool(p["integrity"])
        counts["lost"] |= state.lost_ids
        counts["turns_lost"] += len(p["turns_lost"])
        counts["broken_turns"] += len(p["broken_turns"])
        if len(state.campaigns) != 1:
            resume_failures.append(f"{label}: {len(state.campaigns)} campaigns in the drill's channel")
        for kind, found in p.items():
            for problem in found[:5]:
                say(f"{label}: {kind}: {problem}")
        return state

    for n, moment in enumerate(_plan(kills, rng), start=1):
        nth = rng.randint(1, 2 if moment == "summary" else 3)
        span = TOKENS * TOKEN_DELAY
        delay = rng.uniform(0, span) if moment in ("generate", "summary") else 0.0
        life = run_child(db, n, seed, embedder, moment, nth, delay, folder)
        acked.update(life.acked)
        commits.update(life.commits)
        if not life.killed:
            child_errors.append(f"kill {n} ({moment}): the child ended by itself (rc {life.returncode},"
                                f" timed out: {life.timed_out}): {life.stderr[-500:]}")
        else:
            by_moment[moment] += 1
        check_resume(life, f"kill {n}")
        if tamper is not None:
            tamper(db)
        expected = check(f"kill {n}")
        say(f"kill {n}/{kills} at {moment} #{nth} (+{delay:.3f} s): {len(life.acked)} acked, "
            f"{len(life.commits)} turns, {expected.turns} turns in all, {len(expected.pending)} pending")

    final = run_child(db, kills + 1, seed, embedder, None, 0, 0.0, folder)
    acked.update(final.acked)
    commits.update(final.commits)
    if final.returncode != 0:
        child_errors.append(f"final child: rc {final.returncode}: {final.stderr[-500:]}")
    check_resume(final, "final")
    if tamper is not None:
        tamper(db)
    expected = check("final")
    if expected.pending:
        resume_failures.append(f"final: actions still pending after a clean turn: {expected.pending}")
    conn = sqlite3.connect(db)
    summaries = conn.execute("SELECT COUNT(*) FROM memories WHERE kind = 'summary'").fetchone()[0]
    conn.close()
    figures = {
        "drill": "crash", "seed": seed, "embedder": embedder, "kills": sum(by_moment.values()),
        "by_moment": by_moment, "acknowledged": len(acked), "lost": len(counts["lost"]),
        "turns_lost": counts["turns_lost"], "broken_turns": counts["broken_turns"],
        "integrity_failures": counts["integrity"], "resume_failures": len(resume_failures),
        "child_errors": len(child_errors), "resumed_pending_consumed": resumed_consumed,
        "turns": expected.turns, "summaries": summaries,
    }
    for problem in resume_failures + child_errors:
        say(problem)
    figures["ok"] = (figures["kills"] == kills and not any(
        figures[k] for k in ("lost", "turns_lost", "broken_turns", "integrity_failures", "resume_failures",
                             "child_errors")))
    if workdir is None and figures["ok"]:
        shutil.rmtree(folder, ignore_errors=True)
    elif not figures["ok"]:
        say(f"the database and the children's stderr are kept in {folder}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=15)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--embedder", choices=("hash", "minilm"), default="hash")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--life", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--final", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return asyncio.run(child_main(args.db, args.life, args.seed, args.final, args.embedder))
    started = time.monotonic()
    figures = run_drill(args.kills, args.seed, args.embedder)
    figures["seconds"] = round(time.monotonic() - started, 1)
    emit(figures)
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
