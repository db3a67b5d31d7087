"""mpx: train, export and run a next-note LSTM MIDI generator."""
from mpx.runtime.versions import version as _version

__version__ = _version("mpx") or "unknown"
