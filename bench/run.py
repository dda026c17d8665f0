"""Every benchmark, one after another, each in its own process, and one table of their figures.

Each benchmark runs as `python bench/NAME.py ...` (this interpreter: the project's .venv); its last
stdout line is its JSON figures, its stderr goes to .cache/bench/NAME.log. The child's peak resident
memory comes from wait4 (Linux counts the descendants it waited for, so startup.py's bot processes
count too). A benchmark that fails shows "failed" and its exit code, and the run goes on. The
machine's load average is recorded before and after each one. Prints a Markdown table
(benchmark | figure | value | goal), then, as its last line, one JSON object with everything.

Usage: bench/run [--quick] [--full] [--only turn,retrieval,...] [--timeout 3600] [--torch-threads N]
  --quick  smaller sizes and fewer repeats: a smoke run of the whole thing (its figures are not the
           ones to quote);
  --full   memory.py in both modes (greedy and sampled) at 64 tokens and again at 200 tokens; by
           default it runs greedy at 64 tokens only (each mode takes ~10 minutes on 2 cores);
  --torch-threads N  OMP_NUM_THREADS / MKL_NUM_THREADS for every benchmark (default: unset, torch
           takes one thread per core, as the bot does). On a 2-core machine that other work keeps
           busy, torch's 2 spinning threads slowed a 16-token generate from ~5 s to 37-66 s; 1 keeps
           the figures about the code rather than the scheduler.
Names: startup, turn, batching, retrieval, backends (when bench/backends.py exists), memory, memory200,
narration.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from common import ROOT, emit

BENCH = ROOT / "bench"
LOGS = ROOT / ".cache" / "bench"


@dataclass
class Bench:
    name: str
    script: str
    args: list[str] = field(default_factory=list)
    quick: list[str] = field(default_factory=list)  # replaces args under --quick


def plan(quick: bool, full: bool) -> list[Bench]:
    memory_mode = ["--mode", "both" if full else "greedy"]
    benches = [
        Bench("startup", "startup.py", [], ["--cached-runs", "1"]),
        Bench("turn", "turn.py", [], ["--repeats", "1", "--edit-turns", "1"]),
        Bench("batching", "batching.py", [], ["--repeats", "1"]),
        Bench("retrieval", "retrieval.py", [], ["--sizes", "2000", "10000", "--queries", "40", "--turns", "5"]),
        Bench("backends", "backends.py", [], ["--runs", "1", "--tokens", "32"]),
        Bench("memory", "memory.py", memory_mode + ["--tokens", "64"], ["--mode", "greedy", "--tokens", "16"]),
        Bench("narration", "narration.py", [], ["--turns", "4", "--max-new-tokens", "48"]),
        Bench("game", "game.py", [], ["--turns", "6"]),
    ]
    if full:
        benches.append(Bench("memory200", "memory.py", ["--mode", "both", "--tokens", "200"],
                             ["--mode", "greedy", "--tokens", "32"]))
    return benches


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def last_json(path: Path) -> dict | None:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if not lines:
        return None
    try:
        value = json.loads(lines[-1])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def tail(path: Path, count: int = 8) -> list[str]:
    return path.read_text(errors="replace").splitlines()[-count:] if path.exists() else []


def run_one(bench: Bench, quick: bool, timeout: float, env: dict | None = None) -> dict:
    import subprocess

    script = BENCH / bench.script
    record: dict = {"script": f"bench/{bench.script}"}
    if not script.exists():
        record["status"] = "not present"
        return record
    args = bench.quick if quick else bench.args
    command = [sys.executable, str(script), *args]
    record["command"] = " ".join(["python", f"bench/{bench.script}", *args])
    LOGS.mkdir(parents=True, exist_ok=True)
    out_path, log_path = LOGS / f"{bench.name}.out", LOGS / f"{bench.name}.log"
    record["log"] = str(log_path.relative_to(ROOT))
    record["load_avg_before"] = load()
    print(f"[bench/run] {bench.name}: {record['command']} (load {record['load_avg_before']})", file=sys.stderr,
          flush=True)
    start = time.perf_counter()
    with open(out_path, "w") as out, open(log_path, "w") as err:
        child = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        timed_out = False
        while True:  # wait4 gives this child's own rusage (peak RSS), which Popen.wait does not
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout and not timed_out:
                timed_out = True
                child.kill()
            time.sleep(0.2)
        child.returncode = os.waitstatus_to_exitcode(status)
    record["seconds"] = round(time.perf_counter() - start, 1)
    record["load_avg_after"] = load()
    record["rc"] = child.returncode
    record["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # KiB on Linux
    figures = last_json(out_path)
    if child.returncode == 0 and figures is not None:
        record["status"] = "ok"
        record["figures"] = figures
    else:
        record["status"] = "timed out" if timed_out else "failed"
        record["why"] = ("timed out" if timed_out else f"exit {child.returncode}" if child.returncode
                         else "no JSON on the last stdout line")
        record["stderr_tail"] = tail(log_path)
    print(f"[bench/run] {bench.name}: {record['status']} in {record['seconds']} s, peak RSS "
          f"{record['peak_rss_mb']} MB", file=sys.stderr, flush=True)
    return record


# --- the table ---------------------------------------------------------------------------------

def num(value, digits: int = 2) -> str:
    if value is None:
        return "?"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def sizes_of(figures: dict, prefix: str) -> list[int]:
    found = {int(k.rsplit("_", 1)[1]) for k in figures if k.startswith(prefix) and k.rsplit("_", 1)[1].isdigit()}
    return sorted(found)


def rows_turn(f: dict) -> list[tuple[str, str, str]]:
    rows = [(f"one whole turn ({f.get('new_tokens')} new tokens, greedy) vs a bare `model.generate` on its prompt",
             f"{num(f.get('engine_turn_s'))} s vs {num(f.get('bare_generate_s'))} s: ratio **{num(f.get('ratio'))}**",
             f"<= {f.get('goal_ratio', 1.05)}")]
    if "first_edit_s" in f:
        each = ", ".join(f"{x:.2f}" for x in f.get("first_edit_s_all", []))
        rows.append(("time to the first streamed edit: submitting a turn as `/dm continue` does to the first "
                     "text its NarrationStream shows (bundled model)",
                     f"**{num(f['first_edit_s'])} s** (median of {f.get('edit_turns')}: {each} s)", ""))
    if "peak_rss_mb" in f:
        rows.append(("peak RSS of the bot's services: bundled models loaded, "
                     f"{f.get('repeats', 0) + 1 + f.get('edit_turns', 0)} turns played",
                     f"**{num(f['peak_rss_mb'], 0)} MB**", ""))
    return rows


def rows_batching(f: dict) -> list[tuple[str, str, str]]:
    results = f.get("results", {})
    counts = sorted(results, key=int)
    speeds = " / ".join(num(results[c].get("tokens_per_s"), 1) for c in counts)
    gains = ", ".join(f"**{num(results[c].get('speedup_vs_1'))}x** at {c}" for c in counts if c != "1")
    ttft = " / ".join(num(results[c].get("ttft_p50_s")) for c in counts)
    return [(f"{' / '.join(counts)} campaigns submitting a turn at once ({f.get('max_new_tokens')} new tokens each), "
             f"{f.get('repeats')} rounds: tokens/s, gain", f"{speeds} tokens/s: {gains}", ">= 2.2x at 4"),
            ("time to first token p50", f"{ttft} s", "")]


def rows_retrieval(f: dict) -> list[tuple[str, str, str]]:
    sizes = sizes_of(f, "search_p50_ms_")
    big = max(sizes) if sizes else 0

    def pair(name: str, size: int) -> str:
        return f"{num(f.get(f'{name}_p50_ms_{size}'))} / {num(f.get(f'{name}_p99_ms_{size}'))} ms"

    rows = [("a turn's search (three queries: vectors, FTS5 words, fusion, SQLite fetch), p50 / p99",
             "; ".join(f"{size:,}: **{pair('search', size)}**" for size in sizes), "<= 10 ms p50 at 100,000")]
    for size in sizes_of(f, "vector_p50_ms_"):
        engine = f.get(f"vector_p50_ms_{size}")
        other = f.get(f"sqlite_vec_p50_ms_{size}")
        if other is not None:
            versus = (f"sqlite-vec vec0 **{pair('sqlite_vec', size)}** "
                      f"({num(other / engine if engine else None, 1)}x the engine's p50; "
                      f"top-{f.get('top_k')} agreement {num(f.get(f'sqlite_vec_top5_agree_{size}'))}, "
                      f"filled in {num(f.get(f'sqlite_vec_build_ms_{size}'), 0)} ms)")
        else:
            versus = f"sqlite-vec: {f.get('sqlite_vec_error', 'not measured')}"
        rows.append((f"vectors alone at {size:,} memories, the same vectors and query vectors: top "
                     f"{f.get('vector_k')} for each of the three queries, p50 / p99",
                     f"engine index (int8, the best 64 on float32) **{pair('vector', size)}**; float32 alone "
                     f"{pair('vector_float32', size)}; top-{f.get('top_k')} agreement with float32 "
                     f"**{num(f.get(f'int8_top5_agree_{size}'))}**; {versus}",
                     "<= 3 ms p50 at 100,000; agreement 1.0" if size == 100_000 else ""))
    rows.append(("a turn's whole recall (embed the three queries + search + pinned facts), p50 / p99",
                 "; ".join(f"{size:,}: **{pair('turn_recall', size)}**" for size in sizes), "<= 25 ms p50 at 100,000"))
    rows.append(("committing a turn with its entries, p99",
                 "; ".join(f"{size:,}: {num(f.get(f'commit_p99_ms_{size}'))} ms" for size in sizes), ""))
    rows.append(("reading a campaign's index once after a restart",
                 "; ".join(f"{size:,}: {num(f.get(f'index_build_ms_{size}'), 0)} ms" for size in sizes), ""))
    if big and big != 100_000:
        rows[0] = (rows[0][0], rows[0][1] + f" (largest size {big:,}: --quick)", rows[0][2])
    return rows


def rows_memory(f: dict) -> list[tuple[str, str, str]]:
    rows = []
    for mode in ("greedy", "sampled"):
        if f"{mode}_facts" not in f:
            continue
        seed = f" (seed {f['seed']})" if mode == "sampled" and "seed" in f else ""
        rows.append((f"facts that reach the probe's prompt 30+ turns later, {f.get('tokens')}-token narrations, "
                     f"{mode}{seed}",
                     f"**{f[f'{mode}_remembered']} / {f[f'{mode}_facts']}**; prompts max "
                     f"{num(f.get(f'{mode}_prompt_tokens_max'))} of {num(f.get(f'{mode}_budget'))} tokens"
                     + ("" if f.get(f"{mode}_within_budget") else " (OVER BUDGET)"),
                     f">= {f.get('goal_rate', 0.9)}"))
    return rows


def rows_startup(f: dict) -> list[tuple[str, str, str]]:
    return [("process start to models ready: first run (GGUF converted once), cached "
             f"(median of {f.get('cached_runs')})",
             f"first **{num(f.get('first_run_s'), 1)} s**; cached **{num(f.get('cached_s'), 1)} s**",
             f"<= {f.get('goal_cached_s', 10)} s cached")]


def rows_game(f: dict) -> list[tuple[str, str, str]]:
    return [(f"a scripted {f.get('turns')}-turn fight of {f.get('players')} players (a retry and an undo in it): "
             "state markers applied exactly once; raw markers posted; sheets equal to the ledger",
             f"{f.get('applied')} of {f.get('state_markers')}: **{f.get('applied_exactly_once')}**; "
             f"**{f.get('raw_markers_posted')}**; **{f.get('ledger_match')}**", "true; 0; true"),
            ("NPC rolls made in place, the narration going on after them",
             f"{f.get('npc_rolls_in_place')} of {f.get('npc_rolls_expected')}", ""),
            ("`/dm roll` from the command to the posted answer (discord.py through SimCord, in process), p50 / p95",
             f"**{num(f.get('roll_p50_s', 0) * 1000)} / {num(f.get('roll_p95_s', 0) * 1000)} ms**", ""),
            ("the party block's tokens per character (mean / max)",
             f"{f.get('party_tokens_per_character')} / {f.get('party_tokens_max')}", "")]


def rows_generic(f: dict) -> list[tuple[str, str, str]]:
    """A benchmark this table has no layout for (e.g. bench/backends.py): its scalar figures."""
    rows = []

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, (int, float, str, bool)) and len(rows) < 24:
            rows.append((f"`{prefix}`", num(value), ""))

    walk("", f)
    return rows


def rows_backends(f: dict) -> list[tuple[str, str, str]]:
    backends = {k: v for k, v in f.items() if isinstance(v, dict) and "tokens_per_s" in v}
    if not backends:
        return rows_generic(f)
    speeds = "; ".join(f"{name} **{num(v['tokens_per_s'], 1)}**" for name, v in backends.items())
    if "speedup" in f:
        speeds += f": **{num(f['speedup'])}x**"
    loads = "; ".join(f"{name} load {num(v.get('load_s'))} s, first token {num(v.get('first_token_s'))} s"
                      for name, v in backends.items())
    rows = [(f"the bundled model's tokens/s by backend ({f.get('new_tokens')} new tokens greedy, prompt "
             f"included, median of {f.get('runs')}); the default: {f.get('default', {}).get('backend')}",
             speeds, f">= {f.get('goal_speedup')}x" if "goal_speedup" in f else ""),
            ("load (cached) and first token", loads, "")]
    channels = f.get("llama.cpp_channels")
    if channels:
        rows.append((f"llama.cpp, {' / '.join(channels)} channels decoded together, aggregate tokens/s",
                     " / ".join(num(v, 1) for v in channels.values())
                     + (f": **{num(f['four_channels_gain'])}x** at 4" if "four_channels_gain" in f else ""),
                     f">= {f.get('goal_four_channels_gain')}x at 4" if "goal_four_channels_gain" in f else ""))
    return rows


def rows_narration(f: dict) -> list[tuple[str, str, str]]:
    count = f"{f.get('posted')} of {f.get('turns')} turns, {f.get('max_new_tokens')} new tokens, sampled"
    return [(f"posted narrations that end at a sentence end ({count})",
             f"**{num(f.get('ends_sentence_rate'))}** (raw model output {num(f.get('raw_ends_sentence_rate'))})",
             f">= {f.get('goal_ends_sentence_rate', 1.0)}"),
            ("posted narrations in the first person (outside quotes) or with a player's line",
             f"**{num(f.get('off_voice_rate'))}** (first person {num(f.get('first_person_rate'))}, player's line "
             f"{num(f.get('player_line_rate'))}); raw model output {num(f.get('raw_off_voice_rate'))}",
             f"<= {f.get('goal_off_voice_rate', 0.02)}"),
            ("raw draws off voice (drawn with the voice guard); turns whose stream showed text taken back",
             f"**{num(f.get('raw_off_voice_rate'))}**; **{f.get('streamed_taken_back')}**",
             f"<= {f.get('goal_raw_off_voice_rate')}; {f.get('goal_streamed_taken_back')}"),
            ("the voice detector on the hand-labelled narrations: precision, recall",
             f"{num(f.get('judge_precision'))}, {num(f.get('judge_recall'))} ({f.get('judge_items')} items)", ""),
            ("mean length of a posted narration; seconds per turn",
             f"{num(f.get('mean_chars'), 0)} characters, {num(f.get('mean_words'), 0)} words (raw "
             f"{num(f.get('raw_mean_chars'), 0)}); {num(f.get('seconds_per_turn'), 1)} s per turn", "")]


LAYOUT = {"game": rows_game, "turn": rows_turn, "batching": rows_batching, "retrieval": rows_retrieval, "memory": rows_memory,
          "memory200": rows_memory, "startup": rows_startup, "backends": rows_backends,
          "narration": rows_narration}


def cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(records: dict[str, dict]) -> str:
    lines = ["| benchmark | figure | value | goal |", "|---|---|---|---|"]
    for name, record in records.items():
        label = f"`{record['script']}`"
        if record["status"] != "ok":
            why = record.get("why", "")
            text = record["status"] + (f" ({why})" if why and why != record["status"] else "")
            if record["status"] != "not present":
                text += f"; see `{record.get('log')}`"
            lines.append(f"| {label} | | **{cell(text)}** | |")
            continue
        try:
            rows = LAYOUT.get(name, rows_generic)(record["figures"])
        except Exception as exc:  # noqa: BLE001 - a figure the layout did not expect must not lose the run
            rows = [(f"(table layout failed: {type(exc).__name__}: {exc})", "", "")] + rows_generic(record["figures"])
        for i, (figure, value, goal) in enumerate(rows):
            lines.append(f"| {label if i == 0 else ''} | {cell(figure)} | {cell(value)} | {cell(goal)} |")
    rss = [f"{name} {record['peak_rss_mb']:,.0f}" for name, record in records.items() if "peak_rss_mb" in record]
    if rss:
        lines.append(f"| `bench/run` | peak RSS of each benchmark process (wait4; MB) | {cell(', '.join(rss))} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats: a smoke run")
    parser.add_argument("--full", action="store_true", help="memory.py in both modes, at 64 and 200 tokens")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before a benchmark is killed")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="OMP_NUM_THREADS for the benchmarks (0: unset, torch's default)")
    args = parser.parse_args(argv)
    benches = plan(args.quick, args.full)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        everything = {b.name: b for b in plan(args.quick, True)}
        unknown = [n for n in wanted if n not in everything]
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(everything)}")
        benches = [everything[n] for n in wanted]
    started = datetime.now(timezone.utc)
    summary: dict = {"started": started.isoformat(timespec="seconds"), "quick": args.quick, "full": args.full,
                     "cpu_count": os.cpu_count(), "python": sys.version.split()[0], "load_avg_start": load()}
    env = dict(os.environ)
    if args.torch_threads > 0:
        env.update(OMP_NUM_THREADS=str(args.torch_threads), MKL_NUM_THREADS=str(args.torch_threads))
    summary["torch_threads"] = env.get("OMP_NUM_THREADS", "default")
    records: dict[str, dict] = {}
    for bench in benches:
        records[bench.name] = run_one(bench, args.quick, args.timeout, env)
    summary["load_avg_end"] = load()
    summary["seconds"] = round((datetime.now(timezone.utc) - started).total_seconds(), 1)
    summary["benchmarks"] = records
    print(table(records))
    print()
    print(f"Measured {started:%Y-%m-%d} in {summary['seconds'] / 60:.0f} min on {os.cpu_count()} CPU cores; "
          f"load average (1, 5, 15 min) {summary['load_avg_start']} at the start, {summary['load_avg_end']} at the end; "
          f"torch threads: {summary['torch_threads']}" + (" (--quick: smoke-run sizes)" if args.quick else "") + ".")
    emit(summary)
    return 0 if all(r["status"] in ("ok", "not present") for r in records.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
