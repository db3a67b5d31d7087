"""The `mpx` command's first code: Ctrl-C ends it in one line from its first moment on.

The console script and `python -m mpx` run `main` here before anything heavy is imported.
Until the command line is parsed and the work begins (cli.main, which then takes Ctrl-C as a
KeyboardInterrupt, so that writes in progress are undone), and again once the work is done,
Ctrl-C prints `mpx: interrupted` and exits 130 at once: importing numpy, onnxruntime or torch
writes nothing that would need undoing. Importing mpx as a library changes no signal handler.
"""
from __future__ import annotations

import os
import signal
import sys

INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C (128 + SIGINT)


def interrupted(signum: int, frame: object) -> None:
    """SIGINT outside the work: say so and exit, without unwinding (nothing to undo)."""
    os.write(2, b"mpx: interrupted\n")
    os._exit(INTERRUPTED)


def exit_on_interrupt() -> None:
    """From now on Ctrl-C exits at once, unless SIGINT is ignored (a job started in the
    background inherits it ignored: it stays so)."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, interrupted)


def raise_on_interrupt() -> None:
    """From now on Ctrl-C raises KeyboardInterrupt (Python's own handler), unless SIGINT is
    ignored."""
    if signal.getsignal(signal.SIGINT) is interrupted:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main() -> None:
    exit_on_interrupt()
    try:
        from .cli import main as run  # numpy, typer, the runtime: a second or more on a busy machine
        run()  # switches to KeyboardInterrupt for the work, and exits
    except KeyboardInterrupt:  # between the work's end and the line below: microseconds
        interrupted(signal.SIGINT, None)
    finally:
        exit_on_interrupt()  # the work is over: a Ctrl-C at exit (a thread's join) exits at once
    sys.exit(0)
