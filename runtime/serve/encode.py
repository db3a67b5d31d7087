"""Notes on the wire: JSON arrays (float32-exact, as the CSV files write them), MIDI bytes, CSV
text, and the lines of a stream (NDJSON or server-sent events)."""
from __future__ import annotations

import io
import json

import numpy as np

from ..midi import to_pretty_midi
from ..notes_csv import HEADER


def _value(x: float) -> str:
    return "%.9g" % x   # every float32 exactly, in at most 9 digits


def notes_json(notes: np.ndarray) -> str:
    """[[pitch, step, duration, velocity], ...]; pitch and velocity are whole numbers."""
    return "[" + ",".join(f"[{int(p)},{_value(s)},{_value(d)},{int(v)}]" for p, s, d, v in notes.tolist()) + "]"


def midi_bytes(notes: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    to_pretty_midi(notes).write(buffer)
    return buffer.getvalue()


def csv_text(notes: np.ndarray) -> str:
    return HEADER + "\n" + "".join(f"{int(p)},{_value(s)},{_value(d)},{int(v)}\n" for p, s, d, v in notes.tolist())


def document(payload: dict, notes: np.ndarray | None = None) -> str:
    """A JSON object of `payload`, and `notes` (spliced in as text) when given."""
    body = json.dumps(payload, separators=(",", ":"))
    if notes is not None:
        body = body[:-1] + (',' if payload else '') + '"notes":' + notes_json(notes) + "}"
    return body


def event(kind: str, payload: dict, sse: bool, notes: np.ndarray | None = None) -> str:
    """One stream event: an NDJSON line, or a server-sent event."""
    body = document({"event": kind, **payload}, notes)
    return f"event: {kind}\ndata: {body}\n\n" if sse else body + "\n"
