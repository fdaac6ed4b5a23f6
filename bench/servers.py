"""What the load phases need to know about a running server under test."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RunningServer:
    """A server under test: its DICOMweb root and the processes whose memory counts.

    ``main_pid`` is the server process; ``helper_pids`` lists the other processes
    whose memory counts: its worker processes, and the embedded Postgres, which
    daemonizes.
    """

    label: str
    dicomweb: str
    main_pid: int
    helper_pids: Callable[[], list[int]] = lambda: []
    versions: dict[str, str] = field(default_factory=dict)
    settings: dict[str, object] = field(default_factory=dict)
