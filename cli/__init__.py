"""mpx: train, export and run a next-note LSTM MIDI generator."""
from __future__ import annotations


def __getattr__(name: str) -> str:
    # Importing `mpx` imports nothing else: the command's Ctrl-C handler (mpx.start) must be in
    # place before the heavy imports, and the package is imported before it.
    if name == "__version__":
        from mpx.runtime.versions import DISTRIBUTION, version
        return version(DISTRIBUTION) or "unknown"
    raise AttributeError(f"module 'mpx' has no attribute {name!r}")
