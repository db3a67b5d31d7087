"""The `mpx` command's first code: Ctrl-C ends it in one line from its first moment on.

The console script and `python -m mpx` run `main` here before anything heavy is imported.
Until the work begins (cli.main) and again once it is over, Ctrl-C prints `mpx: interrupted`
and exits 130 at once: importing numpy, onnxruntime or torch writes nothing to undo. During the
work Ctrl-C raises KeyboardInterrupt, so writes in progress are undone as it unwinds. A library
may turn that KeyboardInterrupt into an error of its own (onnxruntime's import into
"ImportError: initialization failed"), or note it and make Python end the process by SIGINT
at exit (pybind11's exec): so once a Ctrl-C has been seen the command ends as interrupted,
whatever was raised. Every command ends in `_exit`. Importing mpx as a library changes no
signal handler.
"""
from __future__ import annotations

import atexit
import os
import signal
import sys

INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C (128 + SIGINT)
_seen = False


def interrupted(signum: int = signal.SIGINT, frame: object = None) -> None:
    """SIGINT outside the work: say so and exit, without unwinding (nothing to undo)."""
    os.write(2, b"mpx: interrupted\n")
    os._exit(INTERRUPTED)


def _raise(signum: int, frame: object) -> None:
    global _seen
    _seen = True
    raise KeyboardInterrupt


def _unraisable(info: object) -> None:
    """A KeyboardInterrupt raised where Python cannot propagate it (an at-fork callback such as
    logging's lock release, a __del__) would print 'Exception ignored in ...' with a traceback
    and be lost: deliver it again in the main thread instead, where the work unwinds."""
    if isinstance(getattr(info, "exc_value", None), KeyboardInterrupt):
        # from another thread, so that the handler runs once this hook has returned (run here,
        # it would raise inside the hook: unraisable again)
        import _thread
        _thread.start_new_thread(_thread.interrupt_main, ())  # threading's start() would wait here
        return
    sys.__unraisablehook__(info)  # type: ignore[arg-type]


def exit_on_interrupt() -> None:
    """From now on Ctrl-C exits at once, unless SIGINT is ignored (a job started in the
    background inherits it ignored: it stays so)."""
    if signal.getsignal(signal.SIGINT) in (signal.default_int_handler, _raise):
        signal.signal(signal.SIGINT, interrupted)


def raise_on_interrupt() -> None:
    """From now on Ctrl-C raises KeyboardInterrupt, and is remembered (interrupt_seen)."""
    if signal.getsignal(signal.SIGINT) is interrupted:
        signal.signal(signal.SIGINT, _raise)


def interrupt_seen() -> bool:
    """Whether Ctrl-C came during the work of this command (started by `main`)."""
    return _seen


def main() -> None:
    exit_on_interrupt()
    sys.unraisablehook = _unraisable
    try:
        from .cli import main as run  # numpy, typer, the runtime: a second or more on a busy machine
        run()  # the work; exits with SystemExit
        code: object = 0
    except SystemExit as done:
        code = done.code
    except BaseException:
        if not _seen:
            raise
        code = INTERRUPTED
        os.write(2, b"mpx: interrupted\n")
    finally:
        exit_on_interrupt()
    _exit(INTERRUPTED if _seen else code if isinstance(code, int) else 0 if code is None else 1)


def _exit(code: int) -> None:
    """End the process here, with the Ctrl-C handler still in place: Python's own shutdown
    (module teardown, torch's and onnxruntime's destructors: a second at times) would put
    SIGINT back to its default first, and a Ctrl-C then would kill the process without a word;
    and after a library noted a KeyboardInterrupt (pybind11's exec), Python ends the process
    by SIGINT even when it was handled. The atexit functions run (temporary folders go)."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more to say there
            pass
    os._exit(code)
