"""Output paths, checked before any work: never overwrite what the user did not ask to replace.

Every command that writes a file calls `check_outputs` before it reads a corpus, loads a model
or generates a note, so a refused output costs nothing and leaves nothing behind:
- an output that is one of the command's inputs is refused, even with --force (replacing the
  seed with its own continuation loses the seed);
- an existing output is refused unless --force;
- an output of a kind the command does not write is refused (`--out x.wav` would be a MIDI
  file under a WAV name);
- an output in a folder that does not exist or cannot be written is refused.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from .atomic import ensure_writable
from .errors import OptionsError

MIDI_SUFFIXES = (".mid", ".midi")
CSV_SUFFIXES = (".csv",)                    # notes as text
NOTE_SUFFIXES = (*MIDI_SUFFIXES, *CSV_SUFFIXES)   # what run and notes write
PNG_SUFFIXES = (".png",)                    # what plot writes


def same_file(a: Path, b: Path) -> bool:
    """True when a and b name one file (links and relative paths included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return a.resolve() == b.resolve()


def check_suffix(path: Path, allowed: Sequence[str], flag: str) -> None:
    if path.suffix.lower() not in allowed:
        kinds = allowed[0] if len(allowed) == 1 else f"{', '.join(allowed[:-1])} or {allowed[-1]}"
        found = f"not {path.suffix!r}" if path.suffix else "the path has no suffix"
        raise OptionsError(f"{flag} {path}: writes {kinds} files only ({found})")


def check_outputs(outputs: Iterable[str | os.PathLike[str]], inputs: Iterable[str | os.PathLike[str]] = (),
                  *, force: bool = False, suffixes: Sequence[str] | None = None,
                  flag: str = "--out") -> list[Path]:
    """Refuse, in one line naming the path, every output this command must not write."""
    paths = [Path(p) for p in outputs]
    sources = [Path(p) for p in inputs]
    for path in paths:
        if path.is_dir():
            raise OptionsError(f"{flag} {path}: is a directory, expected a file path")
        if suffixes is not None:
            check_suffix(path, suffixes, flag)
        for source in sources:
            if same_file(path, source):
                raise OptionsError(f"{flag} {path}: is the input {source}; choose another output "
                                   "(--force does not replace an input)")
        if path.exists() and not force:
            raise OptionsError(f"{path}: exists; pass --force to replace it, or choose another {flag}")
        ensure_writable(path)
    return paths

