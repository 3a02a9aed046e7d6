"""Profile the omnicanal server under a wrk load with py-spy: ``python bench/pyspy.py b1|b2|b3|l2 [SECONDS]``.

``l2``: the loyalty redemption of ``bench/loyalty.py`` (PostgreSQL, 16 connections).

Writes a flame graph (SVG) and a collapsed-stack file into bench/results/, then prints the functions
with the most samples (own time and total time).
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import run

# leaf frames of a thread that waits (GIL released): not CPU time
IDLE = ("Condition.wait", "Queue.get", "Event.wait", "Lock.acquire")


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "b1"
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    plan = run.Plan.make(quick=True)
    plan.duration = seconds + 2
    plan.warmup = 0
    run.RESULTS.mkdir(exist_ok=True)
    run.DATA.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="profile-", dir=run.DATA))
    try:
        profile(which, seconds, plan, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def profile(which: str, seconds: int, plan: run.Plan, workdir: Path) -> None:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    collapsed = run.RESULTS / f"profile-{which}-{stamp}.txt"
    with contextlib.ExitStack() as stack:
        if which == "b3":
            url, ids, token = run.b3_sqlite_data(run.Plan.make(quick="--full" not in sys.argv))
            script, env, conns = "c360.lua", {"BENCH_TOKEN": token, "BENCH_IDS": str(ids)}, plan.connections
        elif which == "l2":
            from tests.support.postgres import PostgresCluster

            import loyalty

            url, env = loyalty.l2_setup(stack.enter_context(PostgresCluster()), workdir)
            script, conns = "redeem.lua", 16
        else:
            url, token = run.fresh_db(workdir, "profile.db")
            script = "ingest.lua" if which == "b1" else "batch.lua"
            env = {"BENCH_TOKEN": token, "BENCH_BATCH": "1000"}
            conns = plan.connections if which == "b1" else plan.batch_connections
        record(which, seconds, plan, url, script, env, conns, collapsed)


def record(
    which: str, seconds: int, plan: run.Plan, url: str, script: str, env: dict[str, str], conns: int, collapsed: Path
) -> None:
    with run.serve("omnicanal", *run.omnicanal_server(url)) as server:
        spy = subprocess.Popen(
            [
                "py-spy",
                "record",
                "--pid",
                str(server.proc.pid),
                "--duration",
                str(seconds),
                "--rate",
                "200",
                "--threads",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(collapsed),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        result = run.wrk(server, script, plan, connections=conns, env=env, warmup=False, timeout="30s")
        spy.wait()
    print(run.fmt_http("under py-spy", result))
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        samples += n
        frames = stack.split(";")
        if any(frames[-1].startswith(idle) for idle in IDLE):
            continue
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    print(f"{samples} samples -> {collapsed}")
    print("-- own time")
    for frame, n in own.most_common(25):
        print(f"{100 * n / samples:5.1f}%  {frame}")
    print("-- total time")
    for frame, n in total.most_common(45):
        print(f"{100 * n / samples:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
