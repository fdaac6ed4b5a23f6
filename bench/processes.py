"""Child server processes on loopback: free ports, readiness polling, orderly stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

LOOPBACK = "127.0.0.1"
POLL_INTERVAL_S = 0.2


class LaunchError(RuntimeError):
    """A server did not start; the message carries the end of its log."""


def free_port(avoid_offset: int | None = None, below: int = 65_536) -> int:
    """A TCP port free on loopback now (and, if asked, also at ``port + avoid_offset``)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if port >= below:
            continue
        if avoid_offset is None or _is_free(port + avoid_offset):
            return port
    raise LaunchError("no free loopback port found")


def _is_free(port: int) -> bool:
    if port > 65_535:
        return False
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class ManagedProcess:
    """A child in its own session, so a terminal Ctrl-C reaches only the bench,
    which then stops the child in order (graceful signal first, SIGKILL last)."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
        if not self.running():
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def spawn(
    name: str,
    command: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ManagedProcess:
    """Start ``command`` with stdout and stderr going to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    return ManagedProcess(name, process, log_path)


def wait_until(child: ManagedProcess, probe: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``probe`` until it answers True; fail early if the child exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.running():
            raise LaunchError(
                f"{child.name} exited with status {child.process.returncode}:\n"
                f"{log_tail(child.log_path)}"
            )
        if probe():
            return
        time.sleep(POLL_INTERVAL_S)
    raise LaunchError(f"{child.name}: {what} not ready in {timeout:.0f} s")


def http_ok(url: str) -> Callable[[], bool]:
    """A probe that answers True once ``url`` replies 200."""

    def probe() -> bool:
        try:
            return httpx.get(url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    return probe


def command_output(command: Sequence[str], timeout: float = 20.0) -> str:
    """First line of a short command's output, or empty if it cannot run."""
    try:
        done = subprocess.run(list(command), capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (done.stdout or done.stderr).decode(errors="replace").strip()
    return text.splitlines()[0] if text else ""
