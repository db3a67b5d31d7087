"""The terminal of a command: progress bars for the long steps (parsing MIDI, scoring, training,
exporting, generating), drawn on stderr when it is a terminal and quiet otherwise, so piped or
logged output holds only results.

While a bar is drawn, every line the command prints (a result with `echo`, a warning through
`LogHandler`) goes through the bar's own console, which prints it above the bar and redraws
the bar below: a bar never overwrites a report. One console per command, whatever draws."""
from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

_live: list[Any] = []  # the rich Progress being drawn, if any (one at a time)


class Bars:
    """One bar per step name, made when the step first reports."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def update(self, name: str, done: int, total: int | None, **fields: Any) -> None:
        if self.progress is None:
            return
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(fields.pop("description", name), total=total, **fields)
        self.progress.update(self.tasks[name], completed=done, total=total, **fields)

    def callback(self, name: str) -> Callable[[int, int], None]:
        return lambda done, total: self.update(name, done, total)


def default_columns() -> tuple[Any, ...]:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    return (TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn())


@contextlib.contextmanager
def bars(enabled: bool = True, columns: tuple[Any, ...] | None = None, console: Any = None) -> Iterator[Bars]:
    """Bars on stderr while the block runs; gone when it ends (results stay on stdout)."""
    from rich.console import Console
    from rich.progress import Progress

    console = console or Console(stderr=True)
    if not (enabled and console.is_terminal):
        yield Bars(None)
        return
    with Progress(*(columns or default_columns()), console=console, transient=True) as progress:
        _live.append(progress)
        try:
            yield Bars(progress)
        finally:
            _live.remove(progress)


def echo(text: str) -> None:
    """A line of the command's output, on stdout. While a bar is drawn and stdout is the same
    terminal, through the bar's console (above the bar); else straight to stdout."""
    if _live and sys.stdout.isatty():
        _live[-1].console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)
    else:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


class LogHandler(logging.Handler):
    """mpx's log lines (warnings naming a skipped file, ...) on stderr, above any bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if _live:
                _live[-1].console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)
            else:
                sys.stderr.write(text + "\n")
                sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging's own contract: a failed log line never stops the work
            self.handleError(record)
