"""Peak resident memory over a stretch of time, sampled by a background thread.

``ru_maxrss`` is a peak over the whole process life, so it cannot tell the rows of one run
apart. :class:`RssSampler` reads the current RSS (``/proc/self/statm`` on Linux) every few
milliseconds and keeps the maximum seen while it is running; elsewhere it falls back to
``ru_maxrss``.
"""

from __future__ import annotations

import os
import threading
from types import TracebackType

from detforge.runtime.stats import peak_rss_bytes

__all__ = ["RssSampler", "current_rss_bytes"]

_STATM = "/proc/self/statm"


def current_rss_bytes() -> int | None:
    """Resident memory of this process now, in bytes (None where ``/proc`` is absent)."""
    try:
        with open(_STATM, encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


class RssSampler:
    """Tracks the peak RSS while active; a context manager.

    Args:
        interval_s: Seconds between samples.

    Example:
        >>> with RssSampler() as rss:
        ...     data = b"x" * 20_000_000
        >>> rss.peak_bytes > 20_000_000
        True
    """

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        now = current_rss_bytes()
        self.peak_bytes = max(self.peak_bytes, peak_rss_bytes() if now is None else now)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> RssSampler:
        self._stop.clear()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="detforge-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    @property
    def peak_mb(self) -> float:
        """The peak in MiB."""
        return self.peak_bytes / 2**20
