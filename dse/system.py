"""Facts about the host this process runs on (pure): usable CPU cores, the host name, whether a
process is alive, and the time for records."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
from pathlib import Path

HOST = socket.gethostname()


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    return (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):  # a zombie is dead for our purpose
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def now_utc() -> dt.datetime:
    """The current UTC time to the millisecond (the precision of stored timestamps)."""
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def stamp() -> str:
    """The current UTC time as an ISO 8601 string to the second, e.g. 2026-12-03T06:30:00Z."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
