"""Interrupts at every moment of a run: what a user's Ctrl-C, a scheduler's SIGTERM or a SIGKILL leaves behind.

A reference `cartpole-dqn train` is timed from launch to exit (D seconds: its second run, with the compile cache
warm, as the runs below find it). Then `--moments` runs get SIGINT or SIGTERM (alternately) at evenly spread
moments of 1.05 D, from start-up (imports) through compiling, training and the end of the run (final evaluation,
plots, models, summaries) to exit, and `--kills` runs get SIGKILL. Each interrupted run must exit 130 with at most
one line on stderr, and leave either nothing or a run folder that `resume` continues and `evaluate` reads; each
killed run must leave a folder that `resume` continues or that a new `train` into it reclaims. A signal that
arrives after the process has exited, or begun to exit, is reported, not counted.

With `--resume` every run is instead `cartpole-dqn resume` of a copy of one run trained for a third of the budget:
then nothing may be lost, so every interrupted or killed run must leave a folder that `resume` continues (and
`evaluate` reads), with at least the episodes the copy held.

    python benchmarks/interrupts.py --moments 20 --kills 6
    python benchmarks/interrupts.py --moments 20 --kills 6 --resume
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

CLI = [sys.executable, "-m", "cartpole_dqn"]


def _start(out: Path, steps: int, base: Path | None) -> subprocess.Popen:
    """`train` into `out`, or, given a `base` run, `resume` of a copy of it in `out`."""
    if base is not None:
        shutil.copytree(base, out)
    command = ["resume", str(out)] if base is not None else ["train", "--out", str(out)]
    return subprocess.Popen([*CLI, *command, "--max-steps", str(steps), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _episodes(out: Path) -> int:
    scores = out / "scores.csv"
    return len(scores.read_text().splitlines()) if scores.exists() else 0


def _accepted(out: Path, steps: int) -> str:
    """'nothing', 'resume+evaluate' (both accept the folder), or what refused it."""
    if not out.exists():
        return "nothing"
    more = subprocess.run([*CLI, "resume", str(out), "--max-steps", str(steps + 1000), "--quiet"],
                          capture_output=True, text=True)
    if more.returncode != 0:
        return f"resume exit {more.returncode}: {more.stderr.strip()[-200:]}"
    ev = subprocess.run([*CLI, "evaluate", str(out), "--episodes", "1"], capture_output=True, text=True)
    return "resume+evaluate" if ev.returncode == 0 else f"evaluate exit {ev.returncode}: {ev.stderr.strip()[-200:]}"


def _reclaimed(out: Path, steps: int) -> str:
    """After a SIGKILL: 'nothing', 'resumed', or 'reclaimed' (a new train into the folder), or what refused."""
    if not out.exists():
        return "nothing"
    if (out / "checkpoint" / "meta.json").exists():
        r = subprocess.run([*CLI, "resume", str(out), "--max-steps", str(steps + 1000), "--quiet"],
                           capture_output=True, text=True)
        return "resumed" if r.returncode == 0 else f"resume exit {r.returncode}: {r.stderr.strip()[-200:]}"
    r = subprocess.run([*CLI, "train", "--out", str(out), "--max-steps", "1000", "--quiet"], capture_output=True,
                       text=True)
    return "reclaimed" if r.returncode == 0 else f"train exit {r.returncode}: {r.stderr.strip()[-200:]}"


def _exiting(pid: int) -> bool:
    """Whether the process has begun to exit (Linux): its exit code is fixed, so a signal now changes nothing, but
    the kernel takes tens of milliseconds to tear down a JAX process before `poll()` sees it gone."""
    try:
        state, flags = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0:7:6]
    except (OSError, IndexError):
        return False
    return state in "ZX" or bool(int(flags) & 0x4)    # PF_EXITING


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moments", type=int, default=20, help="SIGINT/SIGTERM runs (default 20)")
    ap.add_argument("--kills", type=int, default=6, help="SIGKILL runs (default 6)")
    ap.add_argument("--max-steps", type=int, default=6000, help="each run's budget (default 6000)")
    ap.add_argument("--resume", action="store_true", help="interrupt `resume` of a trained run, not `train`")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cartpole-dqn-interrupts-"))
    base = None
    if args.resume:
        base = work / "base"
        subprocess.run([*CLI, "train", "--out", str(base), "--max-steps", str(args.max_steps // 3), "--quiet"],
                       check=True, capture_output=True)
    held = _episodes(base) if base is not None else 0
    for attempt in range(2):     # the second with the compile cache the first filled, as the runs below find it
        started = time.perf_counter()
        ref = _start(work / f"reference-{attempt}", args.max_steps, base)
        ref.communicate()
        duration = time.perf_counter() - started
    print(f"# interrupts: {platform.node()} {platform.processor() or platform.machine()}, "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {'resume' if base else 'train'}, reference run "
          f"{duration:.1f} s (exit {ref.returncode})")
    failures, counted = 0, 0
    # Spread over 1.05 D, so that the last moments fall as the process exits.
    plan = [(signal.SIGINT if i % 2 == 0 else signal.SIGTERM, 1.05 * duration * (i + 0.5) / args.moments)
            for i in range(args.moments)]
    plan += [(signal.SIGKILL, duration * (i + 0.5) / args.kills) for i in range(args.kills)]
    for n, (sig, at) in enumerate(plan):
        out = work / f"run-{n}"
        proc = _start(out, args.max_steps, base)
        time.sleep(at)
        if proc.poll() is not None or _exiting(proc.pid):
            proc.communicate()
            print(json.dumps({"signal": sig.name, "at_s": round(at, 2), "result": "process had exited"}))
            continue
        proc.send_signal(sig)
        _, err = proc.communicate()
        lines = err.strip().splitlines()
        kept = _episodes(out)     # before the checks below resume the run further
        lost = f"lost episodes: {kept} of the {held} it held" if base is not None and kept < held else None
        if sig == signal.SIGKILL:
            left = lost or _reclaimed(out, args.max_steps)
            ok = left in (("resumed",) if base else ("nothing", "resumed", "reclaimed"))
        else:
            left = lost or _accepted(out, args.max_steps)
            ok = proc.returncode == 130 and len(lines) <= 1 and left in (
                ("resume+evaluate",) if base else ("nothing", "resume+evaluate"))
        counted += 1
        failures += not ok
        print(json.dumps({"signal": sig.name, "at_s": round(at, 2), "exit": proc.returncode, "stderr": lines,
                          "left": left, "ok": ok}))
    print(f"# {counted - failures} of {counted} interrupted runs ended as they should")
    shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
