"""The store's analysis commands at 2 × 10,000 results: `dse report`, `dse edf compare`,
`dse suggest` (and `dse fit-linear`, `dse importance`, the report's two largest parts), the
tree before beside this tree, in one run on one store, repetitions interleaved.

    .venv/bin/python bench/report_speed.py --before /tmp/dse-before [--n 10000] [--repeat 3]
        [--store DIR] [--commands report,edf,suggest,fit-linear,importance]

--before is a copy of the earlier source (`git archive <commit> dse spaces | tar -x -C DIR`).
The store (AnyNetX_A and AnyNetX_E, synthetic task, one result per model with every column
the trainer writes and bench/store_speed.py's synthetic errors, 2% diverged) is written
without training as one segment per space and compacted by this tree; --store keeps it in DIR
(built there when missing, reused when present). Both sides run read-only commands on it. Times
are wall and CPU (user + system) seconds of the whole command in a fresh process (start-up and
imports included), best of --repeat; CPU is the honest number on a loaded machine. The script
also says whether both sides printed the same (the report: its text, figures and time stamp
left out).

The commands that fit widths (report, fit-linear, suggest) are timed on this tree twice: cold,
the store's cache of fits (dse.store.fitcache) deleted before each run, and warm, every
architecture already in it (as on any run after the first).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from segments_speed import build  # noqa: E402
from store_speed import HERE, check_sides, run, side  # noqa: E402

TARGETS = {"report": 10.0, "edf": 2.0}
FITTING = ("report", "fit-linear", "suggest")  # timed cold and warm


def commands(store: Path, out: Path) -> dict[str, list[str]]:
    s = ["--store", str(store)]
    return {"report": ["report", "--out", str(out / "report.html"), *s],
            "edf": ["edf", "compare", "xa", "xe", "--out", str(out / "edf.png"), *s],
            "suggest": ["suggest", "anynetxe", *s],
            "fit-linear": ["fit-linear", "--space", "xa", "--out", str(out / "fit.png"), *s],
            "importance": ["importance", "xa", "--pairs", "--out", str(out / "importance.png"),
                           *s]}


def printed(src: Path, args: list[str], out: Path) -> str:
    """What a command printed, its output folder as OUT (the report: its HTML without
    figures and time stamp)."""
    p = subprocess.run([sys.executable, "-m", "dse", *args], capture_output=True, text=True,
                       check=True, **side(src))
    if args[0] != "report":
        return p.stdout.replace(str(out), "OUT")
    html = (out / "report.html").read_text(encoding="utf-8")
    html = re.sub(r'src="data:image/png;base64,[^"]*"', "", html)
    return re.sub(r"generated [^·]*·", "", html)


def differences(a: str, b: str) -> str:
    """'same', or how many table cells / lines differ and the first few."""
    if a == b:
        return "same"
    ca, cb = (re.findall(r"<td>(.*?)</td>", x) or x.splitlines() for x in (a, b))
    diff = [(x, y) for x, y in zip(ca, cb) if x != y]
    return (f"{len(diff)} of {max(len(ca), len(cb))} cells/lines differ, e.g. "
            + "; ".join(f"{x!r} → {y!r}" for x, y in diff[:3]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--n", type=int, default=10_000, help="results per space")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--store", type=Path, default=None,
                    help="keep the store here (built when missing, reused when present)")
    ap.add_argument("--commands", default="report,edf,suggest,fit-linear,importance")
    a = ap.parse_args()
    print(f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, load "
          f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())}, OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}", flush=True)
    check_sides(a.before)
    with tempfile.TemporaryDirectory(prefix="dse-report-speed-") as tmp:
        store = a.store or Path(tmp) / "store"
        if not store.exists():
            build(store, a.n)
            w, c = run(HERE, ["compact", "--store", str(store)])
            print(f"store of 2 × {a.n:,} built; dse compact {w:.1f} s ({c:.1f} CPU)",
                  flush=True)
        sides = {"before": a.before, "now": HERE}
        outs = {name: Path(tmp) / name for name in sides}
        for o in outs.values():
            o.mkdir()
        names = a.commands.split(",")
        cache = store / "analysis" / "fit_linear_cache.parquet"
        best = {(c, s): (float("inf"), float("inf")) for c in names
                for s in (*sides, "warm")}
        for r in range(a.repeat):  # interleaved: both sides see the same load
            for c in names:
                for s in (*sides, "warm") if c in FITTING else sides:
                    if s == "now":
                        cache.unlink(missing_ok=True)  # cold: every architecture fitted
                    t = run(sides.get(s, HERE), commands(store, outs[s if s in sides
                                                                    else "now"])[c])
                    best[c, s] = min(best[c, s], t)
                    print(f"  [{r + 1}/{a.repeat}] dse {c}, {s}: {t[0]:.2f} s ({t[1]:.2f} "
                          f"CPU), load {os.getloadavg()[0]:.1f}", flush=True)
        print(f"\nbest of {a.repeat}, 2 × {a.n:,} results, wall s (CPU s):")
        for c in names:
            (wb, cb), (wn, cn) = best[c, "before"], best[c, "now"]
            target = f"; target ≤ {TARGETS[c]:g} s" if c in TARGETS else ""
            warm = ""
            if c in FITTING:
                ww, cw = best[c, "warm"]
                warm = f", now with its fits cached {ww:.2f} ({cw:.2f}); {wb / ww:.1f}× wall"
            print(f"dse {c}: before {wb:.2f} ({cb:.2f}), now {wn:.2f} ({cn:.2f}); "
                  f"{wb / wn:.1f}× wall, {cb / cn:.1f}× CPU{warm}{target}")
        for c in names:
            if c in ("report", "edf", "suggest"):
                said = [printed(src, commands(store, outs[s])[c], outs[s])
                        for s, src in sides.items()]
                print(f"dse {c} printed: {differences(*said)}")
        if a.store is None:
            shutil.rmtree(store)
    print(f"load after: {'/'.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
