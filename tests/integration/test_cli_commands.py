"""``skypacs migrate`` and ``version`` run as the installed command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import skypacs

pytestmark = pytest.mark.integration

SKYPACS = str(Path(sys.executable).parent / "skypacs")


def run(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SKYPACS_")}
    env.update(extra_env or {})
    return subprocess.run(
        [SKYPACS, *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def test_migrate_twice_applies_then_reports_current(pg_empty_dsn: str, tmp_path: Path) -> None:
    env = {"SKYPACS_INDEX__DSN": pg_empty_dsn}
    first = run("migrate", "--data-dir", str(tmp_path), extra_env=env)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_initial" in first.stdout

    second = run("migrate", "--data-dir", str(tmp_path), extra_env=env)
    assert second.returncode == 0, second.stderr
    assert "index schema is current" in second.stdout
    assert "applied" not in second.stdout


def test_migrate_embedded_postgres_in_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    first = run("migrate", "--data-dir", str(data_dir))
    assert first.returncode == 0, first.stderr
    assert "applied" in first.stdout
    assert (data_dir / "postgres" / "PG_VERSION").exists()
    second = run("migrate", "--data-dir", str(data_dir))
    assert second.returncode == 0, second.stderr
    assert "index schema is current" in second.stdout


def test_unreachable_index_fails_with_a_message(tmp_path: Path) -> None:
    from tests.fixtures.ports import free_port

    dsn = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    result = run("migrate", "--data-dir", str(tmp_path), extra_env={"SKYPACS_INDEX__DSN": dsn})
    assert result.returncode == 1
    assert "unreachable" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_error_exits_2_naming_the_variable(tmp_path: Path) -> None:
    result = run("serve", "--data-dir", str(tmp_path), extra_env={"SKYPACS_STORAGE__BACKEND": "s3"})
    assert result.returncode == 2
    assert "SKYPACS_STORAGE__S3__BUCKET" in result.stderr
    assert "Traceback" not in result.stderr


def test_version() -> None:
    result = run("version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"skypacs {skypacs.__version__}"


def test_unknown_command_is_a_usage_error() -> None:
    result = run("frobnicate")
    assert result.returncode == 2
    assert "usage: skypacs" in result.stderr
