"""Hand-made Standard MIDI Files for tests: every byte chosen, so a test says exactly which
events a reader meets (restruck keys, same-tick note-offs, running status, tempo events in
other tracks, the sustain pedal)."""
from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

Event = tuple[int, bytes]  # (delta ticks, the event's bytes after its delta time)


def vlq(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def on(pitch: int, velocity: int = 64, channel: int = 0) -> bytes:
    return bytes((0x90 | channel, pitch, velocity))


def off(pitch: int, channel: int = 0, velocity: int = 0) -> bytes:
    return bytes((0x80 | channel, pitch, velocity))


def cc(number: int, value: int, channel: int = 0) -> bytes:
    return bytes((0xB0 | channel, number, value))


def pedal(down: bool, channel: int = 0) -> bytes:
    return cc(64, 127 if down else 0, channel)


def program(number: int, channel: int = 0) -> bytes:
    return bytes((0xC0 | channel, number))


def tempo(microseconds_per_quarter: int) -> bytes:
    return b"\xff\x51\x03" + microseconds_per_quarter.to_bytes(3, "big")


def text(value: bytes) -> bytes:
    return b"\xff\x01" + vlq(len(value)) + value


def sysex(payload: bytes) -> bytes:
    return b"\xf0" + vlq(len(payload) + 1) + payload + b"\xf7"


def track(events: Iterable[Event], running_status: bool = False, end: bool = True) -> bytes:
    """An MTrk chunk; with running_status, a channel message repeating the last status byte
    (with no system exclusive event since) leaves it out, as many writers do."""
    body = bytearray()
    status = None
    for delta, event in events:
        body += vlq(delta)
        if running_status and event[0] < 0xF0 and event[0] == status:
            body += event[1:]
        else:
            body += event
        if event[0] < 0xF0:
            status = event[0]
        elif event[0] in (0xF0, 0xF7):
            status = None
    if end:
        body += b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">L", len(body)) + bytes(body)


def smf(tracks: Sequence[bytes], fmt: int | None = None, division: int = 480) -> bytes:
    fmt = (0 if len(tracks) == 1 else 1) if fmt is None else fmt
    return b"MThd" + struct.pack(">LhhH", 6, fmt, len(tracks), division) + b"".join(tracks)


def one_track(events: Iterable[Event], **options: object) -> bytes:
    return smf([track(events, **options)])  # type: ignore[arg-type]
