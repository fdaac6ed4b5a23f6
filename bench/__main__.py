"""``python -m bench``: SkyPACS (filesystem and S3) and Orthanc under the same load."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from .corpus import Corpus, CorpusSpec, generate
from .load import LoadOptions
from .results_file import RESULTS_DIR, write_results
from .runner import SERVER_CHOICES, run_servers, say, selected_servers
from .stats import megabytes
from .table import HEADER_NOTE, footnotes, render, table_rows

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
QUICK_SPEC = CorpusSpec(studies=1, series=1, instances=10)
QUICK_REPEAT = 5
QUICK_RUNS = 2
DEFAULT_PHASE_TIMEOUT_S = 600.0
QUICK_PHASE_TIMEOUT_S = 120.0


def build_parser() -> argparse.ArgumentParser:
    defaults = CorpusSpec()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 study x 1 series x 10 instances")
    parser.add_argument("--studies", type=int, default=defaults.studies)
    parser.add_argument("--series", type=int, default=defaults.series, help="per study")
    parser.add_argument("--instances", type=int, default=defaults.instances, help="per series")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--rows", type=int, default=defaults.rows, help="pixel rows per image")
    parser.add_argument(
        "--columns", type=int, default=defaults.columns, help="pixel columns per image"
    )
    parser.add_argument(
        "--repeat", type=int, default=LoadOptions().repeat, help="requests per latency figure"
    )
    parser.add_argument(
        "--runs", type=int, default=LoadOptions().runs, help="runs per throughput figure"
    )
    parser.add_argument(
        "--retrieves",
        type=int,
        default=LoadOptions().retrieves,
        help="timed retrieves behind the series retrieve figure",
    )
    parser.add_argument(
        "--servers",
        default=",".join(SERVER_CHOICES),
        help=f"comma-separated subset of {','.join(SERVER_CHOICES)}",
    )
    parser.add_argument("--phase-timeout", type=float, help="seconds allowed per phase")
    parser.add_argument(
        "--corpus-dir",
        type=Path,
        default=CORPUS_DIR,
        help="where the corpus is written once and reused (one subdir per spec)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "skypacs-bench",
        help="fresh server data dirs, removed after the run unless --keep-data",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--keep-data", action="store_true", help="keep server data dirs")
    return parser


def corpus_spec(args: argparse.Namespace) -> CorpusSpec:
    image = {"seed": args.seed, "rows": args.rows, "columns": args.columns}
    if args.quick:
        return CorpusSpec(**{**QUICK_SPEC.__dict__, **image})
    return CorpusSpec(studies=args.studies, series=args.series, instances=args.instances, **image)


def load_options(args: argparse.Namespace) -> LoadOptions:
    if args.quick:
        return LoadOptions(repeat=QUICK_REPEAT, runs=QUICK_RUNS, retrieves=QUICK_REPEAT)
    return LoadOptions(
        repeat=max(1, args.repeat), runs=max(1, args.runs), retrieves=max(1, args.retrieves)
    )


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SERVER_CHOICES))
    if unknown:
        parser.error(f"unknown server(s): {', '.join(unknown)}")
    if min(args.studies, args.series, args.instances) < 1:
        parser.error("--studies, --series and --instances must be at least 1")
    return names


def headline(started: dt.datetime, corpus: Corpus, options: LoadOptions) -> list[str]:
    spec = corpus.spec
    return [
        f"SkyPACS benchmark, {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores",
        f"corpus: {spec.studies} studies x {spec.series} series x {spec.instances} instances "
        f"of {spec.rows}x{spec.columns} 16-bit CT ({spec.instance_count} instances, "
        f"{megabytes(corpus.total_bytes):.0f} MB), seed {spec.seed}",
        f"load: STOW batches of {options.batch_size} from {options.stow_clients} clients; "
        f"latency p50/p95 over {options.repeat} requests; throughput median of "
        f"{options.runs} runs (series retrieve: {options.retrieves}); "
        f"frames at concurrency {options.frame_concurrency}",
        HEADER_NOTE,
    ]


def show(text: str) -> None:
    """The report goes to stdout; progress goes to stderr (``say``)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    """SIGTERM behaves as Ctrl-C: asyncio cancels the running phase, servers stop."""
    signal.raise_signal(signal.SIGINT)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    names = validate(parser, args)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    spec, options = corpus_spec(args), load_options(args)
    timeout = args.phase_timeout or (
        QUICK_PHASE_TIMEOUT_S if args.quick else DEFAULT_PHASE_TIMEOUT_S
    )
    corpus_root = args.corpus_dir / spec.key
    say(f"corpus: writing or reusing {spec.instance_count} instances under {corpus_root}")
    corpus = generate(spec, corpus_root)
    run_root = args.work_dir / f"run-{started:%Y%m%dT%H%M%SZ}"
    try:
        runs = run_servers(selected_servers(names), run_root, corpus, options, timeout)
    except KeyboardInterrupt:
        say("interrupted: servers stopped, no results written")
        return 130
    finally:
        if not args.keep_data:
            shutil.rmtree(run_root, ignore_errors=True)
    results = {run.label: run.figures for run in runs if not run.error}
    rows = table_rows(results)
    show("\n".join([*headline(started, corpus, options), "", render(rows)]))
    for line in footnotes(results):
        show(line)
    for run in runs:
        if run.error:
            show(f"{run.label} not measured: {run.error.splitlines()[0]}")
    path = write_results(started, corpus, options, runs, rows, args.results_dir)
    show(f"\nresults: {path}")
    return 0 if any(not run.error for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
