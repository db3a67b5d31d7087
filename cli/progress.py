"""Progress bars for the long steps of a command (parsing MIDI, scoring, validating), drawn on
stderr when it is a terminal and quiet otherwise, so piped or logged output holds only results."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any


class Bars:
    """One bar per step name, made when the step first reports."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def update(self, name: str, done: int, total: int) -> None:
        if self.progress is None:
            return
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total)
        self.progress.update(self.tasks[name], completed=done, total=total)

    def callback(self, name: str) -> Callable[[int, int], None]:
        return lambda done, total: self.update(name, done, total)


@contextlib.contextmanager
def bars(enabled: bool = True) -> Iterator[Bars]:
    """Bars on stderr while the block runs; gone when it ends (results stay on stdout)."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    console = Console(stderr=True)
    if not (enabled and console.is_terminal):
        yield Bars(None)
        return
    with Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True) as progress:
        yield Bars(progress)
