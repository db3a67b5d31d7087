"""Running `mpx` in the test process, as the console script runs it, and what its failures must
look like: one line on stderr, no traceback."""
from __future__ import annotations

import json
import struct
import sys
from collections.abc import Callable
from typing import Any

import pytest


def mpx(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`mpx ARGS` in this process (the same main() the console script runs): (code, out, err).
    Anything but a SystemExit escaping main() would be a traceback for the user: it fails here."""
    from mpx.cli import main
    argv = sys.argv
    sys.argv = ["mpx", *args]
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def one_line_error(code: int, err: str, *needles: str) -> None:
    assert code != 0, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


def midi_bytes(*events: bytes, division: int = 480) -> bytes:
    """A one-track MIDI file of raw events (each with its delta time) plus a few notes."""
    notes = b"".join(b"\x00\x90" + bytes([60 + i, 64]) + b"\x60\x80" + bytes([60 + i, 0]) for i in range(30))
    track = b"".join(events) + notes + b"\x00\xff\x2f\x00"
    return (b"MThd" + struct.pack(">IHHH", 6, 0, 1, division)
            + b"MTrk" + struct.pack(">I", len(track)) + track)


BAD_KEY = b"\x00\xff\x59\x02\x7f\x05"  # key signature with 127 sharps: mido's KeySignatureError


def json_edit(change: Callable[[dict[str, Any]], object]) -> Callable[[str], str]:
    """A spec edit: JSON text -> the same JSON after `change` (a damaged-spec test's tool)."""
    def edit(text: str) -> str:
        spec = json.loads(text)
        change(spec)
        return json.dumps(spec)
    return edit
