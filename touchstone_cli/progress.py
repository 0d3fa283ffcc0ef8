"""A dependency-free progress bar for uploads: bytes sent, rate and time left, redrawn in place."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} GiB"


class ProgressBar:
    def __init__(self, *, total: int, label: str, stream: TextIO = sys.stderr, width: int = 30):
        self.total, self.label, self.stream, self.width = max(total, 1), label, stream, width
        self.done = 0
        self.started = time.monotonic()
        self._last_draw = 0.0
        self.interactive = stream.isatty()

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._last_draw >= (0.1 if self.interactive else 5.0) or self.done >= self.total:
            self._last_draw = now
            self._draw(now)

    def render(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.started, 1e-6)
        fraction = min(self.done / self.total, 1.0)
        filled = int(fraction * self.width)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        return (f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {100 * fraction:5.1f}% "
                f"{human_bytes(self.done)}/{human_bytes(self.total)} {human_bytes(rate)}/s {left:4.0f} s left")

    def _draw(self, now: float) -> None:
        end = "\r" if self.interactive else "\n"
        self.stream.write(self.render(now) + end)
        self.stream.flush()

    def finish(self) -> None:
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()
