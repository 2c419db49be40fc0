"""Run one command and measure it: wall time, CPU time and peak RSS of that child alone.

``os.wait4`` returns the rusage of the one child it reaps (including any grandchildren that
child waited for), so CPU and ``ru_maxrss`` are per run. ``getrusage(RUSAGE_CHILDREN)``
would give a running maximum over every child so far, which is useless for peak RSS.

But a forked child starts with the parent's high-water mark (Linux keeps it across exec),
so ``ru_maxrss`` of a child of this big harness reads as the harness's own peak. The peak
RSS therefore comes from GNU time (``/usr/bin/time -f %M``), a small process that forks the
command itself; without it the column is left empty rather than wrong.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

GNU_TIME = "/usr/bin/time"


def _peak_mib(path: Path) -> float:
    """The command's peak RSS in MiB as GNU time wrote it (KiB), or NaN."""
    try:
        return int(path.read_text().split()[-1]) / 1024
    except (OSError, ValueError, IndexError):
        return float("nan")


@dataclass
class Run:
    cmd: list[str]
    wall: float  # seconds
    user: float  # CPU seconds
    sys: float
    maxrss_mb: float  # MiB (ru_maxrss is KiB on Linux)
    rc: int
    timed_out: bool = False
    cold: bool = False

    @property
    def cpu(self) -> float:
        return self.user + self.sys

    def as_dict(self) -> dict:
        return asdict(self) | {"cpu": self.cpu}


def drop_caches() -> bool:
    """Drop the page cache (root only); False if not permitted."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def run(cmd: list[str], *, log: Path, env: dict[str, str] | None = None,
        cwd: Path | None = None, timeout: float = 1800, cold: bool = False) -> Run:
    """Run ``cmd`` with stdout+stderr to ``log``; measure it with wait4."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    log.parent.mkdir(parents=True, exist_ok=True)
    peak_file = log.with_name(log.name + ".maxrss")
    peak_file.unlink(missing_ok=True)
    if os.access(GNU_TIME, os.X_OK):
        cmd = [GNU_TIME, "-f", "%M", "-o", str(peak_file), *cmd]
    timed_out = threading.Event()
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env,
                                cwd=cwd, start_new_session=True)

        def kill() -> None:
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
    return Run(cmd=cmd[5:] if cmd[0] == GNU_TIME else cmd, wall=wall, user=ru.ru_utime,
               sys=ru.ru_stime, maxrss_mb=_peak_mib(peak_file), rc=proc.returncode,
               timed_out=timed_out.is_set(), cold=cold)

