"""Server processes keep freed heap memory for the next request (glibc only)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from skypacs.config import ConfigError, load_settings

# A request's worth of buffers (24 blocks of 1 MiB) made and freed five times:
# the page faults counted after the first round are memory handed back to the
# kernel and touched again.
_CHURN = """
import resource, sys
from skypacs.config import load_settings
from skypacs.malloc_tuning import tune_malloc

http = load_settings().http
tuned = tune_malloc(http.malloc_trim_threshold_bytes, http.malloc_mmap_threshold_bytes)

def churn():
    blocks = [b"x" * (1 << 20) for _ in range(24)]
    del blocks

churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    churn()
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")


def _churn_faults(**env: str) -> tuple[bool, int]:
    done = subprocess.run(
        [sys.executable, "-c", _CHURN], env=env, capture_output=True, text=True, check=True
    )
    tuned, faults = done.stdout.split()
    return tuned == "True", int(faults)


@glibc_only
def test_default_thresholds_keep_a_requests_memory() -> None:
    tuned, faults = _churn_faults()
    assert tuned
    # Five rounds of 24 MiB would be some 30,000 faults if the memory went back.
    assert faults < 500


@glibc_only
def test_zero_trim_threshold_leaves_glibc_defaults() -> None:
    tuned, faults = _churn_faults(SKYPACS_HTTP__MALLOC_TRIM_THRESHOLD_BYTES="0")
    assert not tuned
    assert faults > 5 * 24 * 256 // 2


def test_mmap_threshold_beyond_glibcs_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYPACS_HTTP__MALLOC_MMAP_THRESHOLD_BYTES", str(64 * 1024**2))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "SKYPACS_HTTP__MALLOC_MMAP_THRESHOLD_BYTES" in str(caught.value)
