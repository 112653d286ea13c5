"""Progress for long loops: a live bar on a terminal, one plain line every few seconds otherwise.

A log file or CI console should not fill with carriage-return bars; when stderr is not a
terminal, :class:`Progress` prints ``label: done/total unit (rate/s, ETA s)`` at most every
``every`` seconds, and once at the end.

Usage::

    >>> with Progress(100, "index demo", enabled=False) as bar:
    ...     bar.update(10)
"""

from __future__ import annotations

import sys
import time


class Progress:
    """``update(n)`` as work is done; ``write(line)`` prints above the bar."""

    def __init__(self, total: int, label: str, unit: str = "img", enabled: bool = True, every: float = 5.0):
        self.total, self.label, self.unit, self.every = total, label, unit, every
        self.enabled = enabled
        self.done = 0
        self.started = self.last = time.monotonic()
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=unit, desc=label, file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            print(self.line(), file=sys.stderr, flush=True)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta_text = f"ETA {eta:.0f} s" if eta != float("inf") else "ETA ?"
        return f"{self.label}: {self.done}/{self.total} {self.unit} ({rate:.0f}/s, {eta_text})"

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.done:
            print(self.line(), file=sys.stderr, flush=True)
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
