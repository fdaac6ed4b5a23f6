"""Run ``skypacs`` server commands as an operator would, output captured to a file."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.fixtures.ports import free_port

SKYPACS = str(Path(sys.executable).parent / "skypacs")
START_DEADLINE_S = 120.0
STOP_DEADLINE_S = 60.0


def clean_env() -> dict[str, str]:
    """The caller's environment without SkyPACS settings (embedded defaults)."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("SKYPACS_")}


class Serve:
    """One ``skypacs serve`` process with its output captured to a file."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        command: str = "serve",
        env: dict[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    SKYPACS,
                    command,
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(data_dir),
                    *extra_args,
                ],
                env={**clean_env(), **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        """Poll /healthz then /readyz until both answer 200 (or the process dies)."""
        deadline = time.monotonic() + START_DEADLINE_S
        pending = ["/healthz", "/readyz"]
        with httpx.Client(base_url=self.base, timeout=5.0) as client:
            while pending and time.monotonic() < deadline:
                if self.process.poll() is not None:
                    pytest.fail(f"skypacs serve exited early:\n{self.output()}")
                try:
                    if client.get(pending[0]).status_code == 200:
                        pending.pop(0)
                        continue
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        if pending:
            pytest.fail(f"skypacs serve never answered {pending[0]}:\n{self.output()}")

    def stop(self, sig: signal.Signals) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=STOP_DEADLINE_S)

    def kill(self) -> None:
        """SIGKILL the server and any worker processes it left."""
        if self.process.poll() is None:
            workers = psutil.Process(self.process.pid).children(recursive=True)
            self.process.kill()
            self.process.wait(timeout=STOP_DEADLINE_S)
            for worker in workers:
                with contextlib.suppress(psutil.Error):
                    worker.kill()


def postgres_processes(data_dir: Path) -> list[psutil.Process]:
    """Postgres server processes whose command line names ``data_dir``."""
    found = []
    needle = str(data_dir)
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "postgres" in (proc.info["name"] or "") and needle in cmdline:
            found.append(proc)
    return found
