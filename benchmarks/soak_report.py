"""The soak test's results: the targets' verdicts and the markdown section of docs/RELIABILITY.md."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from .soak_user import UserLog

MIB = 2 ** 20
PASS, FAIL, NOT_JUDGED = "PASS", "FAIL", "not judged"


@dataclass
class RoundMemory:
    """The app after one round (every user done with its action), before the next starts."""

    round: int  # 1-based
    seconds: float  # the round's wall time
    rss: int  # VmRSS of the app process, read from /proc by the soak
    rss_trimmed: int | None = None  # from /server_stats: RSS after gc.collect() and malloc_trim(0)
    sessions: int | None = None  # the playground's live sessions
    trees: int | None = None  # live SessionTree objects (a closed session frees its tree)
    tensor_bytes: int | None = None  # bytes of every live tensor's storage, weights included
    nodes: int | None = None  # nodes in the live session trees
    kept_bytes: int | None = None  # the live session trees' kept states and logits (each tree's budgeted store)


@dataclass
class SoakTargets:
    max_errors: int = 0
    growth_limit: float = 0.05  # memory growth from the end of warm-up to the last round
    warmup_rounds: int = 10  # growth is judged from this round on, and only when there are twice as many


@dataclass
class SoakResult:
    users: int
    rounds: int
    tokens: tuple[int, int]
    logs: list[UserLog]
    memory: list[RoundMemory]
    final: dict  # /server_stats once every client closed
    free_seconds: float  # how long the app took to get there
    wall_s: float
    machine: str
    targets: SoakTargets = field(default_factory=SoakTargets)
    waves: list[dict] = field(default_factory=list)  # with --waves: /server_stats after each wave's close
    restarts: list[dict] = field(default_factory=list)  # with --restart-every: {seconds, nodes, lost, reconnects}

    @property
    def load(self) -> str:
        waves = f" x {len(self.waves)} waves" if len(self.waves) > 1 else ""
        return f"{self.users} users x {self.rounds} rounds{waves}"

    @property
    def errors(self) -> list[str]:
        return [e for log in self.logs for e in log.errors]

    @property
    def refusals(self) -> list[str]:
        return [r for log in self.logs for r in log.refusals]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def memory_figure(m: RoundMemory) -> int:
    """The figure memory growth is judged on: RSS after gc + malloc_trim where the app reported it."""
    return m.rss_trimmed if m.rss_trimmed is not None else m.rss


def growth(result: SoakResult, figure=memory_figure) -> tuple[float, RoundMemory, RoundMemory] | None:
    """Relative growth from the end of warm-up to the last round (None when the run is too short to judge)."""
    warm = result.targets.warmup_rounds
    if len(result.memory) < 2 * warm:
        return None
    base, last = result.memory[warm - 1], result.memory[-1]
    return (figure(last) - figure(base)) / figure(base), base, last


def kept_growth(base: RoundMemory, last: RoundMemory) -> str:
    """How much of the growth is the live sessions' own kept states (their history, kept by design)."""
    if base.kept_bytes is None or last.kept_bytes is None:
        return ""
    rest = [memory_figure(m) - m.kept_bytes for m in (base, last)]  # everything but those states
    return (f"; the live sessions' kept states {base.kept_bytes / MIB:.0f} -> {last.kept_bytes / MIB:.0f} MiB, "
            f"their trees {base.nodes} -> {last.nodes} nodes; the rest {rest[0] / MIB:.0f} -> {rest[1] / MIB:.0f} "
            f"MiB, {(rest[1] - rest[0]) / rest[0]:+.1%}")


def freed(final: dict) -> bool:
    return all(final.get(k) == 0 for k in ("sessions", "open_user_sessions", "session_trees"))


def verdicts(result: SoakResult) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for each of the issue's targets."""
    t = result.targets
    errors = len(result.errors)
    rows = [(f"{result.load} with at most {t.max_errors} errors",
             f"{errors} errors ({len(result.refusals)} expected 'busy' refusals besides)",
             PASS if errors <= t.max_errors else FAIL)]
    grew = growth(result)
    target = f"memory growth from round {t.warmup_rounds} to the last under {t.growth_limit:.0%}"
    if result.restarts:  # each restart starts a new process: its memory is not the same process's growth
        rows.append((target, f"{len(result.restarts)} restarts: not one process's growth", NOT_JUDGED))
    elif grew is None:
        rows.append((target, f"only {len(result.memory)} rounds", NOT_JUDGED))
    else:
        change, base, last = grew
        raw = (last.rss - base.rss) / base.rss
        rows.append((target, f"{change:+.1%} ({memory_figure(base) / MIB:.0f} -> {memory_figure(last) / MIB:.0f} "
                             f"MiB RSS after gc + malloc_trim; RSS as read {raw:+.1%}{kept_growth(base, last)})",
                     PASS if change < t.growth_limit else FAIL))
    f = result.final
    rows.append(("every closed session freed (live sessions and session trees 0 once every client closed)",
                 f"{f.get('sessions')} live sessions, {f.get('open_user_sessions')} open UserSessions, "
                 f"{f.get('session_trees')} session trees after {result.free_seconds:.0f} s",
                 PASS if freed(f) and all(freed(w) for w in result.waves) else FAIL))
    if result.restarts:
        lost, nodes = sum(r["lost"] for r in result.restarts), sum(r["nodes"] for r in result.restarts)
        rows.append((f"{len(result.restarts)} restarts (kill -9): no saved node lost",
                     f"{lost} of {nodes} nodes lost; {sum(r['reconnects'] for r in result.restarts)} reconnects "
                     f"(expected); restart to answering {max(r['seconds'] for r in result.restarts):.0f} s at most",
                     PASS if lost == 0 else FAIL))
    return rows


def missed(result: SoakResult) -> bool:
    return any(verdict == FAIL for _, _, verdict in verdicts(result))


def seconds(values: list[float]) -> str:
    return "-" if not values else f"{statistics.median(values):.2f} / {percentile(values, 95):.2f}"


def rates(values: list[float]) -> str:
    return "-" if not values else f"{statistics.median(values):.0f} / {percentile(values, 5):.0f}"


def user_row(name: str, logs: list[UserLog]) -> str:
    samples = [s for log in logs for s in log.samples]
    ttft = [s.ttft for s in samples if s.ttft is not None]
    rate = [s.rate for s in samples if s.rate is not None]
    actions = sum(sum(log.actions.values()) for log in logs)
    return (f"| {name} | {actions} | {sum(log.sessions for log in logs)} | {len(samples)} | {seconds(ttft)} | "
            f"{rates(rate)} | {sum(len(log.errors) for log in logs)} | {sum(len(log.refusals) for log in logs)} |")


def memory_rows(memory: list[RoundMemory]) -> list[str]:
    picked = [m for m in memory if m.round <= 3 or m.round % 5 == 0 or m is memory[-1]]
    rows = ["| round | round time | RSS | RSS after gc + malloc_trim | live sessions | session trees | "
            "their nodes | their kept states | all tensor storage |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    mib = lambda b: "-" if b is None else f"{b / MIB:.1f} MiB"  # noqa: E731
    count = lambda n: "-" if n is None else str(n)  # noqa: E731
    for m in picked:
        rows.append(f"| {m.round} | {m.seconds:.1f} s | {mib(m.rss)} | {mib(m.rss_trimmed)} | {count(m.sessions)} | "
                    f"{count(m.trees)} | {count(m.nodes)} | {mib(m.kept_bytes)} | {mib(m.tensor_bytes)} |")
    return rows


def render(result: SoakResult, command: str) -> str:
    actions: dict[str, int] = {}
    for log in result.logs:
        for name, count in log.actions.items():
            actions[name] = actions.get(name, 0) + count
    lines = [
        f"{result.load} (users are threads, each with its own gradio_client Client = its own session) "
        f"against app.py on loopback, {result.tokens[0]}-{result.tokens[1]} new tokens per generation; "
        f"{result.wall_s / 60:.1f} min in all. Machine: {result.machine}.",
        "", "Actions: " + ", ".join(f"{name} {count}" for name, count in sorted(actions.items())) + ".",
        "", "| target | measured | verdict |", "|---|---|---|",
        *[f"| {target} | {measured} | **{verdict}** |" for target, measured, verdict in verdicts(result)],
        "", "Per user: TTFT is the time from submit to the first update carrying generated text; tok/s are "
            "streamed updates per second after it (the app sends one per token), per streamed call.",
        "", "| user | actions | sessions | streamed calls | TTFT median / p95 (s) | tok/s median / p5 | errors | "
            "busy refusals |", "|---|---:|---:|---:|---:|---:|---:|---:|",
        *[user_row(str(user), [log for log in result.logs if log.user == user]) for user in range(result.users)],
        user_row("**all**", result.logs),
        "", "App memory after each round (every user done, before the next round):", "", *memory_rows(result.memory),
    ]
    f = result.final
    lines += ["", f"Once every client closed: {f.get('sessions')} live sessions, {f.get('open_user_sessions')} open "
                  f"UserSessions, {f.get('session_trees')} session trees (after {result.free_seconds:.0f} s); "
                  f"RSS after gc + malloc_trim {f.get('rss_trimmed_bytes', 0) / MIB:.1f} MiB, all tensor storage "
                  f"{f.get('tensor_bytes', 0) / MIB:.1f} MiB (the model's weights and whatever else is left)."]
    if len(result.waves) > 1:
        lines += ["", "After each wave, every client closed (all sessions freed?): " + "; ".join(
            f"wave {i + 1}: {w.get('sessions')} sessions, {w.get('session_trees')} trees, RSS after gc + "
            f"malloc_trim {w.get('rss_trimmed_bytes', 0) / MIB:.1f} MiB, tensor storage "
            f"{w.get('tensor_bytes', 0) / MIB:.1f} MiB" for i, w in enumerate(result.waves)) + "."]
    for title, items in (("Errors", result.errors), ("Busy refusals", result.refusals)):
        if items:
            lines += ["", f"{title} (first {min(5, len(items))} of {len(items)}):", "",
                      *[f"- `{item}`" for item in items[:5]]]
    lines += ["", f"Rerun: `{command}`."]
    return "\n".join(lines) + "\n"
