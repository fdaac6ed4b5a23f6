"""The JSON record of a run: when, on what machine, which versions, every figure."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from .corpus import Corpus
from .load import LoadOptions
from .runner import ServerRun
from .stats import megabytes

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CLIENT_PACKAGES = ("skypacs", "httpx", "pydicom", "numpy", "psutil")


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def package_versions() -> dict[str, str]:
    versions = {}
    for name in CLIENT_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = ""
    return versions


def corpus_summary(corpus: Corpus) -> dict[str, Any]:
    return {
        **asdict(corpus.spec),
        "instance_count": corpus.spec.instance_count,
        "total_mb": round(megabytes(corpus.total_bytes), 1),
    }


def server_json(run: ServerRun) -> dict[str, Any]:
    return {
        "error": run.error,
        "versions": run.versions,
        "settings": run.settings,
        "memory_peaks": run.memory,
        "figures": [figure.as_json() for figure in run.figures],
    }


def write_results(
    started: dt.datetime,
    corpus: Corpus,
    options: LoadOptions,
    runs: list[ServerRun],
    table: list[list[str]],
    directory: Path = RESULTS_DIR,
) -> Path:
    """Write ``bench-<UTC timestamp>.json`` under ``directory``; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    document = {
        "timestamp": started.isoformat(),
        "machine": machine(),
        "versions": package_versions(),
        "corpus": corpus_summary(corpus),
        "load": asdict(options),
        "servers": {run.label: server_json(run) for run in runs},
        "table": table,
    }
    path = directory / f"bench-{stamp}.json"
    path.write_text(json.dumps(document, indent=1, default=str))
    return path
