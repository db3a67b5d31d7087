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
    """An option value outside what is allowed; the message says what is allowed.

    `field` is the Python parameter at fault (e.g. "num_outputs") when there is one, and the
    message then begins with it, so that a front end can name it as its user typed it
    (`naming("--num-outputs")`, as the CLI does)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def naming(self, name: str) -> str:
        """The message with its parameter called `name` (e.g. a command-line flag)."""
        text = str(self)
        if self.field and text.startswith(self.field):
            return name + text[len(self.field):]
        return text


# The extras of pyproject.toml, by what they add (the install hint names the extra).
EXTRAS = {"train": "torch, onnx, safetensors", "plot": "matplotlib"}


def missing_extra(purpose: str, needs: str, extra: str = "train", instead: str = "") -> MpxError:
    """The one message for an optional part of mpx that is not installed, e.g.
    `missing_extra("the torchscript backend", "torch", instead="or use --backend onnx")`."""
    from .versions import install_hint  # importlib.metadata: only when a message is made
    hint = f"{purpose} needs {needs}: {install_hint(extra)}"
    return MpxError(f"{hint} ({instead})" if instead else hint)
