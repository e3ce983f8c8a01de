"""`python -m benchmarks soak [--users 16] [--rounds 50] [--model demo] [--no-write] [--report-only]`

Starts app.py (with the operator-only --stats endpoint) on loopback, on CPU, and drives it with N concurrent
gradio_client users for R rounds. In each round every user does one action, chosen by its own seeded random
generator: generate, multi-turn chat, fork (rewind and continue), compare 2-3 columns and keep one, export
then import the session file, switch the sampling preset, cancel mid-stream (Job.cancel()), or disconnect
mid-stream (drop the connection and close the client; later rounds use a new client, a new session). After
each round (all users done) it records the app's memory. Once every client closed it waits for the app to
free every session. Verdicts: zero errors (a "busy" refusal is counted apart), memory growth from round 10
to the last under 5%, every closed session freed. With --waves W it does that W times against the same app
(new users, new sessions, another seed), so the memory left after each wave's close shows whether anything
stays behind per session. Every user has a visitor key (/identify), so its conversations are saved in the app's
session store (SQLite in a temporary --data-dir). With --restart-every N the app is killed (kill -9) and started
again after every N rounds: each user reconnects with its key, and every node its conversation held before the
restart must be there after it (verdict: 0 lost; the reconnects are expected, not errors).
"""
from __future__ import annotations

import os
import platform
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .soak_report import RoundMemory, SoakResult, SoakTargets, freed
from .soak_server import AppProcess
from .soak_user import SoakUser, plan

ROUND_TIMEOUT_S = 900.0


@dataclass
class SoakSettings:
    users: int = 16
    rounds: int = 50
    model: str = "demo"
    seed: int = 0
    min_tokens: int = 16
    max_tokens: int = 48
    free_timeout_s: float = 60.0  # how long the app may take to free the sessions once every client closed
    waves: int = 1  # soaks one after another against the same app, every client closed in between
    log_path: Path | None = None  # the app's own output
    restart_every: int = 0  # kill -9 and restart the app after every N rounds (0: never)


def machine() -> str:
    model = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), model)
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{model}, {os.cpu_count()} cores (load average {load:.1f} at the end), Python "
            f"{platform.python_version()}, {platform.system()}")


def measure(app: AppProcess, round_number: int, seconds: float) -> RoundMemory:
    rss = app.rss()
    stats = app.stats()
    return RoundMemory(round_number, seconds, rss, stats["rss_trimmed_bytes"], stats["sessions"],
                       stats["session_trees"], stats["tensor_bytes"], stats["session_nodes"],
                       stats["session_kept_bytes"])


def drive(user: SoakUser, actions: list[str], barrier: threading.Barrier) -> None:
    """One user's thread: per round, its action, then wait at the barrier twice (the round's end, the next
    round's start) so the memory is read while no user is acting."""
    try:
        for action in actions:
            user.act(action)
            barrier.wait(ROUND_TIMEOUT_S)
            barrier.wait(ROUND_TIMEOUT_S)
    except threading.BrokenBarrierError:
        user.log.errors.append(f"user {user.log.user}: the soak was aborted (a round took over "
                               f"{ROUND_TIMEOUT_S:.0f} s)")
    finally:
        user.close()


def wait_freed(app: AppProcess, timeout_s: float) -> tuple[dict, float]:
    """/server_stats polled until no session and no session tree is left (or the timeout); the time taken."""
    start = time.monotonic()
    while True:
        stats = app.stats()
        waited = time.monotonic() - start
        if freed(stats) or waited > timeout_s:
            return stats, waited
        time.sleep(1.0)


def restart(app: AppProcess, users: list[SoakUser], restarts: list[dict], log=print) -> None:
    """Between rounds (no user acting): note each user's nodes, kill -9 the app, start it again, reconnect every
    user (its visitor key resumes its conversation) and count the nodes that did not come back."""
    before = {u.log.user: u.node_ids() for u in users}
    started = time.perf_counter()
    app.restart()
    lost = 0
    for user in users:
        user.reconnect()
        lost += len(before[user.log.user] - user.node_ids())
    restarts.append({"seconds": time.perf_counter() - started, "nodes": sum(map(len, before.values())),
                     "lost": lost, "reconnects": len(users)})
    log(f"restarted the app (kill -9) in {restarts[-1]['seconds']:.1f} s: {lost} of "
        f"{restarts[-1]['nodes']} saved nodes lost, {len(users)} users reconnected")


def run_rounds(app: AppProcess, s: SoakSettings, download_dir: str, log=print,
               first_round: int = 1, restarts: list | None = None) -> tuple[list, list[RoundMemory]]:
    users = [SoakUser(app.url, i, s.seed, (s.min_tokens, s.max_tokens), download_dir) for i in range(s.users)]
    barrier = threading.Barrier(s.users + 1)
    threads = [threading.Thread(target=drive, args=(u, plan(s.seed, u.log.user, s.users, s.rounds), barrier),
                                name=f"soak-user-{u.log.user}", daemon=True) for u in users]
    memory = []
    for thread in threads:
        thread.start()
    try:
        for round_number in range(first_round, first_round + s.rounds):
            started = time.perf_counter()
            barrier.wait(ROUND_TIMEOUT_S)  # every user finished this round's action
            memory.append(measure(app, round_number, time.perf_counter() - started))
            m = memory[-1]
            log(f"round {round_number}: {m.seconds:.1f} s, RSS {m.rss / 2**20:.0f} MiB, trimmed "
                f"{m.rss_trimmed / 2**20:.0f} MiB, {m.sessions} live sessions, errors so far "
                f"{sum(len(u.log.errors) for u in users)}")
            if s.restart_every and round_number % s.restart_every == 0 and round_number < first_round + s.rounds - 1:
                restart(app, users, restarts if restarts is not None else [], log)
            barrier.wait(ROUND_TIMEOUT_S)  # the next round starts
    except threading.BrokenBarrierError:
        log("a round took too long: the soak stops here")
        barrier.abort()
    for thread in threads:
        thread.join(60)
    return [u.log for u in users], memory


def run_soak(s: SoakSettings, log=print) -> SoakResult:
    start = time.perf_counter()
    data_dir = tempfile.TemporaryDirectory(prefix="rwkv-soak-data-")  # the app's session store (SQLite)
    app = AppProcess(model=s.model, log_path=s.log_path, extra_args=("--data-dir", data_dir.name))
    log(f"starting app.py --model {s.model} --stats --data-dir {data_dir.name} ...")
    logs, memory, closes, restarts = [], [], [], []
    with data_dir, app, tempfile.TemporaryDirectory(prefix="rwkv-soak-") as download_dir:
        log(f"app answering at {app.url} (pid {app.pid}); {s.users} users x {s.rounds} rounds x {s.waves} waves")
        for wave in range(s.waves):
            wave_logs, wave_memory = run_rounds(app, replace(s, seed=s.seed + wave), download_dir, log,
                                                first_round=len(memory) + 1, restarts=restarts)
            logs, memory = logs + wave_logs, memory + wave_memory
            log("every client closed; waiting for the app to free the sessions")
            closes.append(wait_freed(app, s.free_timeout_s))
    return SoakResult(s.users, s.rounds, (s.min_tokens, s.max_tokens), logs, memory, closes[-1][0], closes[-1][1],
                      time.perf_counter() - start, machine(), SoakTargets(), waves=[final for final, _ in closes],
                      restarts=restarts)
