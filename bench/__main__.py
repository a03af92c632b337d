"""`python -m bench [--quick] [--only N[,N]] [--scale F] [--out docs/BENCHMARKS.md]`."""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import figures, sharding, workload
from bench.bounds import Limits
from bench.report import FAIL, Row, Section, render

ANALYSIS_MARKER = "<!-- analysis: kept by python -m bench -->"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small estates (about a tenth): a smoke run")
    parser.add_argument("--only", default="", help="comma-separated figure numbers to run (1-7)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="throttle scale: ARM's bucket sizes, refill rates and identity-creation limit "
                             "multiplied by F, in the sandbox and in the client budget alike (default 1)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the Markdown report here (default: docs/BENCHMARKS.md for a full run, "
                             "none for --quick)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep sandbox state and manifests here")
    args = parser.parse_args(argv)
    only = {int(x) for x in args.only.split(",") if x.strip()} or {1, 2, 3, 4, 5, 6, 7}
    if not only <= {1, 2, 3, 4, 5, 6, 7} or args.scale <= 0:
        parser.error("--only takes figure numbers 1-7, --scale a positive number")
    out = args.out if args.out is not None else (None if args.quick else Path("docs/BENCHMARKS.md"))
    command = "python -m bench" + "".join(f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:]))

    e1, e2, e4, e6 = ((workload.QUICK1, workload.QUICK2, workload.QUICK4, workload.QUICK6) if args.quick
                      else (workload.FIGURE1, workload.FIGURE2, workload.FIGURE4, workload.FIGURE6))
    started = time.perf_counter()
    sections: list[Section] = []
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        runs: list[tuple[int, str, Callable[[], Section]]] = [
            (1, "Figure 1", lambda: figures.figure1(e1, args.scale, workdir)),
            (2, "Figure 2", lambda: figures.figure2(e2, args.scale, workdir)),
            (3, "Figure 3", lambda: figures.figure3(e2, args.scale, workdir)),
            (4, "Figure 4", lambda: figures.figure4(e4, args.scale, workdir)),
            (5, "Figure 5", lambda: figures.figure5(e1, args.scale, workdir)),
            (6, "Figure 6", lambda: sharding.figure6(e6, args.scale, workdir)),
            (7, "Figure 7", lambda: figures.figure7(workload.QUICK7 if args.quick else workload.FIGURE7, workdir)),
        ]
        for number, title, run in runs:
            if number not in only:
                continue
            try:
                sections.append(run())
            except Exception as exc:  # a figure that crashes is reported, never hidden
                traceback.print_exc()
                sections.append(Section(title, [Row(f"{number} (did not complete)", f"{type(exc).__name__}: {exc}",
                                                    verdict=FAIL)]))
    duration = time.perf_counter() - started
    limits = Limits(args.scale)
    header = [
        "Every figure runs the sandbox (`reconciler sandbox serve`, reconciler/sandbox/) in its own process and "
        "the reconciler in another, over HTTPS on loopback, with the real Azure SDK clients the product builds "
        "(`ArmTarget`: retry policy, client-side rate budget, call counter). Added latency: reads "
        f"{figures.READ_LATENCY * 1000:g} ms, writes and deletes {figures.WRITE_LATENCY * 1000:g} ms. "
        f"ARM throttling on, throttle scale **{args.scale:g}** for every contender and in the client budget "
        f"alike: {limits.describe()}." + (" **Quick run: small estates, not the brief's sizes.**" if args.quick
                                           else ""),
    ]
    text = render(sections, command=command, header=header, duration=duration)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        # Hand-written analysis below the marker survives re-runs.
        previous = out.read_text(encoding="utf-8") if out.exists() else ""
        if ANALYSIS_MARKER in previous:
            text += "\n" + previous[previous.index(ANALYSIS_MARKER):]
        out.write_text(text, encoding="utf-8")
        print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
