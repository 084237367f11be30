"""Progress for long commands: a one-line bar on a terminal, sparse lines otherwise.

Examples
--------
>>> import io
>>> out = io.StringIO()
>>> bar = ProgressBar("export", stream=out, tty=False, min_interval=0.0)
>>> bar(1, 2, "s0001-1-1"); bar(2, 2, "s0002-1-1"); bar.close()
>>> print(out.getvalue().strip())
export: 1/2 s0001-1-1
export: 2/2 s0002-1-1
>>> quiet = io.StringIO()
>>> with ProgressBar("export", stream=quiet, tty=False) as bar:
...     bar(1, 1, "fast")
>>> quiet.getvalue()
''
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """``bar(done, total, what)``: redraws ``label [####    ] done/total what`` on a terminal;
    elsewhere prints a plain line at most every ``min_interval`` seconds (the first one
    ``min_interval`` after the start, and the last one if any was printed), so short commands
    stay silent and logs stay short."""

    def __init__(
        self,
        label: str,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        min_interval: float = 10.0,
        width: int = 30,
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.min_interval = min_interval
        self.width = width
        self.last = time.monotonic()  # the first plain line only after min_interval
        self.drawn = False

    def __call__(self, done: int, total: int, what: str = "") -> None:
        if self.tty:
            frac = done / total if total else 1.0
            bar = "#" * int(self.width * frac)
            text = f"{self.label} [{bar:<{self.width}}] {done}/{total} {what}"
            self.stream.write("\r" + text[:110].ljust(110))
            self.stream.flush()
            self.drawn = True
            return
        now = time.monotonic()
        if now - self.last >= self.min_interval or (done >= total and self.drawn):
            self.last = now
            self.drawn = True
            print(f"{self.label}: {done}/{total} {what}".rstrip(), file=self.stream)

    def close(self) -> None:
        """End the bar's line (terminal only)."""
        if self.tty and self.drawn:
            self.stream.write("\r" + " " * 110 + "\r")
            self.stream.flush()
        self.drawn = False

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
