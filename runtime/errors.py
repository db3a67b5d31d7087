"""Error types users see. Each message is one line that names the file or value at fault."""
from __future__ import annotations


class MpxError(Exception):
    """Base of every error mpx reports to a user as one line (the CLI prints it and exits with
    `exit_code`: 1, or 130 for an interruption, as a shell reports Ctrl-C)."""

    exit_code = 1


class MidiError(MpxError):
    """A MIDI file that cannot be read, or that holds no notes."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class SpecError(MpxError):
    """A spec that is missing, malformed, or that this version of mpx cannot run."""


class ArtifactError(MpxError):
    """A model file (checkpoint, .pt, .onnx) that is missing, corrupt or foreign."""


class OptionsError(MpxError, ValueError):
    """An option value outside what is allowed; the message says what is allowed."""
