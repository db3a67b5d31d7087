"""The on-disk form of note arrays: one file, a checked header, a raw float32 body.

    b"MPXNOTE1" | header length (uint32, little-endian) | JSON header, padded | body
    body = float32 little-endian [n, 4] (pitch, step, duration, velocity), 64-byte aligned

The header names the codec and the parser that made the notes, the body's shape, dtype and
sha256. A reader trusts nothing it cannot check: a file cut short, a flipped byte, notes made by
another codec or parser version, or content outside what the codec can produce (negative times,
pitches off the keyboard) is `Damaged`, and the cache parses the MIDI file again instead of
training on it. One format serves the cache's entries (one file's notes, or the reason it could
not be read) and its packs (many files' notes, memory-mapped by the training processes).
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mpx.runtime.versions import version

MAGIC = b"MPXNOTE1"
CODEC_VERSION = "notes-v3"  # v2: velocity is the fourth column; v3: ties ordered by velocity, symusic
ALIGN = 64
DTYPE = "<f4"
COLUMNS = 4
MAX_HEADER = 64 << 20  # a pack of ~1M files; anything larger is damage, not a header


def parser_version() -> str:
    """The MIDI parser stack the notes come from: another version may read a file differently."""
    return (f"pretty_midi {version('pretty_midi')}, mido {version('mido')}, "
            f"symusic {version('symusic')}")


class Damaged(Exception):
    """A note file that cannot be trusted; the message says why (for the log, not the user)."""


def digest(body: Any) -> str:
    """sha256 of a buffer, read in slices so a memory-mapped body is not copied whole."""
    h = hashlib.sha256()
    if isinstance(body, np.ndarray):
        if body.size == 0:
            return h.hexdigest()
        body = np.ascontiguousarray(body)
    view = memoryview(body).cast("B")
    for start in range(0, len(view), 16 << 20):
        h.update(view[start:start + (16 << 20)])
    return h.hexdigest()


def header_for(kind: str, n: int, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "codec": CODEC_VERSION, "parser": parser_version(),
            "dtype": DTYPE, "shape": [int(n), COLUMNS], **extra}


def encode_header(header: dict[str, Any]) -> bytes:
    """MAGIC, length and JSON header, padded with spaces so the body starts 64-byte aligned."""
    text = json.dumps(header, separators=(",", ":")).encode()
    size = len(MAGIC) + 4 + len(text)
    text += b" " * (-size % ALIGN)
    return MAGIC + struct.pack("<I", len(text)) + text


def write(path: Path, kind: str, notes: np.ndarray, **extra: Any) -> None:
    """Write `notes` [n, 4] with its header to `path` (the caller makes it atomic)."""
    body = np.ascontiguousarray(notes, DTYPE)
    with open(path, "wb") as fh:
        fh.write(encode_header(header_for(kind, len(body), sha256=digest(body), **extra)))
        fh.write(body.tobytes())


def write_stream(path: Path, kind: str, parts: Iterable[np.ndarray], total: int, **extra: Any) -> None:
    """Write the concatenation of the arrays `parts` yields (`total` notes in all) without
    holding them together in memory: the body first, then the header with its checksum
    (a sha256 has a fixed width, so the header's size is known before the body is written)."""
    size = len(encode_header(header_for(kind, total, sha256="0" * 64, **extra)))
    h = hashlib.sha256()
    written = 0
    with open(path, "wb") as fh:
        fh.seek(size)
        for part in parts:
            raw = np.ascontiguousarray(part, DTYPE).tobytes()
            h.update(raw)
            fh.write(raw)
            written += len(raw) // (4 * COLUMNS)
        if written != total:
            raise ValueError(f"wrote {written} notes, expected {total}")
        fh.seek(0)
        fh.write(encode_header(header_for(kind, total, sha256=h.hexdigest(), **extra)))


def read_header(fh: Any, size: int) -> tuple[dict[str, Any], int]:
    """(header, body offset) of an open note file; Damaged when the header is not one."""
    if size < len(MAGIC) + 4:
        raise Damaged(f"{size} bytes: too short for a header")
    start = fh.read(len(MAGIC) + 4)
    if start[:len(MAGIC)] != MAGIC:
        raise Damaged("not an mpx note file (bad magic)")
    (length,) = struct.unpack("<I", start[len(MAGIC):])
    offset = len(start) + length
    if length > MAX_HEADER or offset > size:
        raise Damaged(f"header of {length} bytes in a {size}-byte file")
    try:
        header = json.loads(fh.read(length))
    except ValueError:
        raise Damaged("header is not JSON") from None
    if not isinstance(header, dict):
        raise Damaged("header is not a JSON object")
    _check_header(header, size - offset)
    return header, offset


def _check_header(header: dict[str, Any], body_bytes: int) -> None:
    if header.get("codec") != CODEC_VERSION:
        raise Damaged(f"made by codec {header.get('codec')!r}, this mpx reads {CODEC_VERSION!r}")
    if header.get("parser") != parser_version():
        raise Damaged(f"made by parser {header.get('parser')!r}, this one is {parser_version()!r}")
    shape = header.get("shape")
    if header.get("dtype") != DTYPE or not (isinstance(shape, list) and len(shape) == 2
                                             and shape[1] == COLUMNS and isinstance(shape[0], int)
                                             and shape[0] >= 0):
        raise Damaged(f"dtype {header.get('dtype')!r}, shape {shape!r}: expected {DTYPE} [n, {COLUMNS}]")
    if body_bytes != shape[0] * COLUMNS * 4:
        raise Damaged(f"body of {body_bytes} bytes for {shape[0]} notes (cut short or padded)")
    if not isinstance(header.get("sha256"), str):
        raise Damaged("header has no checksum")


def read(path: Path) -> tuple[dict[str, Any], np.ndarray]:
    """Header and notes of a whole note file, checksum and content checked; Damaged otherwise.
    FileNotFoundError when there is no file."""
    with open(path, "rb") as fh:
        header, offset = read_header(fh, os.fstat(fh.fileno()).st_size)
        body = fh.read()
    if digest(body) != header["sha256"]:
        raise Damaged("checksum mismatch: the notes were changed after they were written")
    notes = np.frombuffer(body, DTYPE).reshape(header["shape"]).astype(np.float32)
    if header.get("kind") == "notes":
        problem = content_problem(notes)
        if problem:
            raise Damaged(problem)
    return header, notes


def open_mapped(path: Path) -> tuple[dict[str, Any], np.ndarray]:
    """Header and a read-only memory map of the body, checksum checked (one read of the pages,
    which training needs anyway). Processes mapping one file share its pages."""
    with open(path, "rb") as fh:
        header, offset = read_header(fh, os.fstat(fh.fileno()).st_size)
    n = header["shape"][0]
    if n == 0:
        mapped = np.zeros((0, COLUMNS), np.float32)
    else:
        mapped = np.memmap(path, dtype=DTYPE, mode="r", offset=offset, shape=(n, COLUMNS))
    if digest(mapped) != header["sha256"]:
        raise Damaged("checksum mismatch: the notes were changed after they were written")
    return header, mapped


def content_problem(notes: np.ndarray) -> str | None:
    """Why `notes` could not have come from the codec (runtime/midi.py), or None.

    The codec gives at least one note; pitches and velocities are MIDI integers (velocity 0 is a
    note-off, never a note); steps and durations are finite and never negative; the first step is 0.
    """
    if notes.ndim != 2 or notes.shape[1] != COLUMNS or len(notes) == 0:
        return f"shape {list(notes.shape)}: expected [n >= 1, {COLUMNS}]"
    if not np.isfinite(notes).all():
        return "holds NaN or infinite values"
    pitch, step, duration, velocity = notes.T
    if (pitch < 0).any() or (pitch > 127).any() or (pitch != np.round(pitch)).any():
        return "pitch outside the MIDI integers 0..127"
    if (velocity < 1).any() or (velocity > 127).any() or (velocity != np.round(velocity)).any():
        return "velocity outside the MIDI integers 1..127"
    if (step < 0).any() or (duration < 0).any():
        return "negative step or duration"
    if step[0] != 0:
        return "the first note's step is not 0"
    return None
