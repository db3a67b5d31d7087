"""The fast MIDI reader: symusic's C++ parser for the events, pretty_midi's rules for the notes.

mido, under pretty_midi, reads ~50k messages a second: a 1M-note file took minutes. symusic
(C++) reads it in a fraction of a second, but pairs note-ons with note-offs by its own rules and
times events by every track's tempo events. So this module takes from symusic only what both
agree on, ticks, and applies pretty_midi's rules itself:

- times: pretty_midi's tick -> seconds map, built from the tempo events of the first track only,
  with pretty_midi's own floating-point operations, so every time is the same float64;
- notes: pretty_midi ends every sounding note of a key at the key's next note-off (a key struck
  twice before its note-off makes two notes that end together); symusic ends the oldest one and
  keeps the other open, and drops a note-on never released. Every file track is parsed with a
  marker at its end and every key released after it, so no note-on is lost, and each note-on
  gets pretty_midi's end: the first note-off of its track, channel and key after it.

`read` returns None, and the caller uses pretty_midi, for anything it does not cover: a
container that is not a plain MThd + MTrk chunks file (checked here, in Python, before the C++
parser sees a byte: chunk lengths, End of Track last), SMPTE timing, format 2, a parse error,
values out of range, ticks beyond 2^30 (symusic keeps 32-bit ticks), a note-off on the tick of
its note-on (pretty_midi's rules drop notes there by event order, which symusic does not keep),
and a key sounding twice at once in two instruments of one track (a program change mid-note).
A file pretty_midi reads is never read differently (tests/test_midi_fast.py checks the test
files and random ones, benchmarks/midi_reader.py the ASAP and maestro-mini corpora). Two kinds
of file read here are refused by pretty_midi: files longer than its 10^7-tick limit ("likely
corrupt": a long generated run written as MIDI is one), and damaged files where mido loses its
place and symusic does not (a stray system status byte, a data byte over 127 in a message
neither uses); benchmarks/midi_reader.py counts them on fuzzed files.
"""
from __future__ import annotations

import dataclasses
import re
import struct

import numpy as np

try:  # a runtime dependency; without it (a source checkout that lacks it) pretty_midi reads all
    import symusic
except ImportError:  # pragma: no cover - exercised by test_midi_fast's fallback test
    symusic = None

SUSTAIN = 64  # the sustain pedal's controller number
_EOT = b"\xff\x2f\x00"
_TICK_LIMIT = 1 << 30  # symusic keeps ticks as int32: stay well inside it


@dataclasses.dataclass(frozen=True)
class Events:
    """Notes as absolute events, before they become notes [N, 4]; `group` and the pedal arrays
    name the instrument (symusic track: channel and program within a file track) each belongs to,
    which is what the sustain pedal acts on."""

    pitches: np.ndarray      # float64 [N]
    starts: np.ndarray       # float64 [N], seconds
    ends: np.ndarray         # float64 [N]
    velocities: np.ndarray   # float64 [N]
    groups: np.ndarray       # int64 [N]
    pedal_groups: np.ndarray  # int64 [M]: CC64 events
    pedal_times: np.ndarray   # float64 [M]
    pedal_values: np.ndarray  # int64 [M]


def available() -> bool:
    return symusic is not None


def _chunks(data: bytes) -> tuple[int, list[tuple[int, int]]] | None:
    """(division, [(body start, body end)] per MTrk) of a plain SMF, else None. The same reading
    as mido's: the header's track count, each chunk an MTrk, each inside the file; plus what the
    fast path needs: ticks per beat (not SMPTE), format 0 or 1, each track ending in End of Track."""
    if len(data) < 14 or data[:4] != b"MThd":
        return None
    size = struct.unpack(">L", data[4:8])[0]
    if size < 6 or 8 + size > len(data):
        return None
    fmt, count, division = struct.unpack(">hhh", data[8:14])
    if fmt not in (0, 1) or count < 1 or division <= 0 or (fmt == 0 and count != 1):
        return None
    tracks = []
    pos = 8 + size
    for _ in range(count):
        if pos + 8 > len(data) or data[pos:pos + 4] != b"MTrk":
            return None
        length = struct.unpack(">L", data[pos + 4:pos + 8])[0]
        start, end = pos + 8, pos + 8 + length
        # End of Track last, its delta time's last byte before it (a byte < 0x80)
        if end > len(data) or length < 4 or data[end - 3:end] != _EOT or data[end - 4] >= 0x80:
            return None
        tracks.append((start, end))
        pos = end
    return division, tracks


_MARK = b"mpx: end of track"


_RELEASES = 2  # rounds of note-offs after a track's end: each ends one open note-on per key


_SYSTEM = re.compile(rb"[\xf1-\xf6\xf8-\xfe]")  # system common / real-time status bytes
_META = re.compile(rb"\xff([\x00\x20\x21\x51\x54\x58\x59])")  # meta types mido decodes strictly
_SYSEX = re.compile(rb"[\xf0\xf7]")


def _vlq(data: bytes, at: int) -> tuple[int, int] | None:
    value = 0
    for _ in range(4):
        if at >= len(data):
            return None
        byte = data[at]
        at += 1
        value = value << 7 | (byte & 0x7F)
        if byte < 0x80:
            return value, at
    return None


def _mido_refuses(body: bytes) -> bool:
    """Whether mido may refuse this track, or read it otherwise than symusic: a system status
    byte (mido takes it as the running status), a meta event mido cannot decode (a key
    signature of 127 sharps, a tempo of two bytes), a system exclusive payload with bytes over
    127, or running status right after a system exclusive event (mido continues the sysex).
    Judged on every place the bytes could hold such an event: a byte of a delta time or a
    payload can look like one, and a false alarm costs only the slower reader."""
    if _SYSTEM.search(body):
        return True
    candidates = sorted([(m.start(), "meta") for m in _META.finditer(body)]
                        + [(m.start(), "sysex") for m in _SYSEX.finditer(body)])
    covered = 0  # candidates inside an event already read (its payload) are not events
    for at, kind in candidates:
        if at < covered:
            continue
        length = _vlq(body, at + 2 if kind == "meta" else at + 1)
        if length is None or length[1] + length[0] > len(body):
            return True
        payload = body[length[1]:length[1] + length[0]]
        covered = length[1] + length[0]
        if kind == "meta":
            try:
                from mido.midifiles.meta import build_meta_message
                build_meta_message(body[at + 1], list(payload))
            except Exception:  # noqa: BLE001 - whatever mido raises, it raises for pretty_midi too
                return True
            continue
        if any(byte >= 0x80 for byte in payload.removeprefix(b"\xf0").removesuffix(b"\xf7")):
            return True
        following = _vlq(body, covered)
        if following is not None and following[1] < len(body) and body[following[1]] < 0x80:
            return True
    return False


def _released(division: int, track: bytes) -> bytes:
    """One file track as a format-0 file, with a marker at its End of Track and then, a tick
    apart, rounds of note-offs for every key of every channel: the note-ons left open become
    notes ending after the marker (symusic ends one per note-off, the oldest), so the parse
    loses none of them, and the marker dates the track's end."""
    body = track[8:-3]  # up to the End of Track's delta time, which now times the marker
    release = b"\x01" + b"\x00".join(bytes((0x80 | ch, key, 0)) for ch in range(16) for key in range(128))
    body += b"\xff\x06" + bytes((len(_MARK),)) + _MARK + release * _RELEASES + b"\x00" + _EOT
    return (b"MThd" + struct.pack(">LhhH", 6, 0, 1, division)
            + b"MTrk" + struct.pack(">L", len(body)) + body)


def _tempo_map(tempos: list[tuple[int, int]], resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pretty_midi's _load_tempo_changes and _update_tick_to_time, as (start ticks, seconds per
    tick, seconds at each start): the same float64 operations in the same order."""
    scales = [(0, 60.0 / (120.0 * resolution))]
    for tick, mspq in tempos:
        if tick == 0:
            scales = [(0, 60.0 / ((6e7 / mspq) * resolution))]
        else:
            scale = 60.0 / ((6e7 / mspq) * resolution)
            if scale != scales[-1][1]:
                scales.append((tick, scale))
    starts = np.array([s for s, _ in scales], np.int64)
    per_tick = np.array([t for _, t in scales], np.float64)
    base = np.zeros(len(scales))
    for i in range(1, len(scales)):
        base[i] = base[i - 1] + per_tick[i - 1] * (starts[i] - starts[i - 1])
    return starts, per_tick, base


def _seconds(ticks: np.ndarray, tempo: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    starts, per_tick, base = tempo
    segment = np.searchsorted(starts, ticks, side="right") - 1
    return base[segment] + per_tick[segment] * (ticks - starts[segment])


def _parse(data: bytes):  # type: ignore[no-untyped-def]
    try:
        return symusic.Score.from_midi(data)
    except Exception:  # noqa: BLE001 - any refusal: pretty_midi decides (and names the damage)
        return None


def read(data: bytes) -> Events | None:
    """The file's non-drum notes and CC64 events, as pretty_midi reads them; None when this
    reader does not cover the file (pretty_midi reads it then)."""
    if symusic is None:
        return None
    layout = _chunks(data)
    if layout is None:
        return None
    division, tracks = layout
    parts = []
    tempos: list[tuple[int, int]] = []
    for index, (start, end) in enumerate(tracks):
        if data.find(_EOT, start, end - 3) != -1 or _mido_refuses(data[start:end - 3]):
            return None  # an End of Track before the last event (or those bytes in a payload)
        score = _parse(_released(division, data[start - 8:end]))
        if score is None:
            return None
        part = _track_notes(score)
        if part is None:
            return None
        parts.append(part)
        if index == 0:  # pretty_midi times every track by the first track's tempo events only
            tempos = [(int(t.time), int(t.mspq)) for t in score.tempos]
    if any(not 0 <= tick < _TICK_LIMIT or mspq <= 0 for tick, mspq in tempos):
        return None
    return _events(parts, _tempo_map(tempos, division))


_Part = dict[str, np.ndarray]


def _track_notes(score) -> list[_Part] | None:  # type: ignore[no-untyped-def]
    """Per instrument (symusic track) of one file track: notes with pretty_midi's ends, in ticks,
    and its CC64 events; None when pretty_midi's notes cannot be known from symusic's."""
    marks = [int(m.time) for m in score.markers if m.text == _MARK.decode()]
    if len(marks) != 1 or not 0 <= marks[0] < _TICK_LIMIT:
        return None
    last = marks[0]  # the track's last tick: notes ending after it were never released
    out = []
    for track in score.tracks:
        if track.is_drum:
            continue
        notes = track.notes.numpy()
        start = notes["time"].astype(np.int64)
        stop = start + notes["duration"].astype(np.int64)
        pitch, velocity = notes["pitch"].astype(np.int64), notes["velocity"].astype(np.int64)
        if len(start) and (start.min() < 0 or stop.max() >= last + _RELEASES
                           or pitch.min() < 0 or velocity.min() < 1):
            # int32 wrap, more note-ons left open than rounds of note-offs, bytes over 127
            return None
        released = stop <= last
        zero = stop == start  # a note-off after its note-on on one tick: pretty_midi drops it
        if zero.any() and _shares_onset(start, pitch, zero):
            return None  # and every other note of that key begun on that tick: order unknown
        controls = track.controls.numpy()
        pedal = controls["number"] == SUSTAIN
        out.append({"start": start[~zero], "pitch": pitch[~zero], "velocity": velocity[~zero],
                    "sounding_until": stop[~zero],
                    "end": _ends(start[~zero], pitch[~zero], stop[released], pitch[released]),
                    "cc_time": controls["time"][pedal].astype(np.int64),
                    "cc_value": controls["value"][pedal].astype(np.int64), "zero": zero.any()})
    if len(out) > 1 and (any(p["zero"] for p in out) or _same_key_overlap(out)):
        return None
    return out


def _shares_onset(start: np.ndarray, pitch: np.ndarray, zero: np.ndarray) -> bool:
    """True when a zero-length note's key and tick is another note's onset too."""
    onsets = pitch << 31 | start
    return bool(np.isin(onsets[zero], onsets[~zero]).any()
                or len(np.unique(onsets[zero])) < int(zero.sum()))


def _ends(start: np.ndarray, pitch: np.ndarray, off: np.ndarray, off_pitch: np.ndarray) -> np.ndarray:
    """pretty_midi's end of each note-on: the first note-off of its key at a later tick (every
    note of the key sounding then ends there); -1 where none comes (pretty_midi drops it)."""
    offs = np.sort(off_pitch << 31 | off)
    at = np.searchsorted(offs, pitch << 31 | start, side="right")
    found = np.minimum(at, len(offs) - 1)
    ok = (at < len(offs)) & ((offs[found] >> 31) == pitch) if len(offs) else np.zeros(len(start), bool)
    return np.where(ok, offs[found] & ((1 << 31) - 1) if len(offs) else -1, -1)


def _same_key_overlap(parts: list[_Part]) -> bool:
    """True when a key played by two instruments of one file track sounds twice at once: a
    channel split by a program change mid-note files a note-off under the other instrument.
    (Two channels playing one key also count: harmless, but not told apart here.)"""
    if len(parts) < 2:
        return False
    start = np.concatenate([p["start"] for p in parts])
    stop = np.concatenate([p["sounding_until"] for p in parts])
    pitch = np.concatenate([p["pitch"] for p in parts])
    owner = np.concatenate([np.full(len(p["start"]), i) for i, p in enumerate(parts)])
    order = np.lexsort((start, pitch))
    pitch, start, stop, owner = pitch[order], start[order], stop[order], owner[order]
    first = np.r_[0, np.flatnonzero(np.diff(pitch)) + 1]
    for a, b in zip(first, np.r_[first[1:], len(pitch)]):
        if b - a > 1 and owner[a:b].min() != owner[a:b].max():
            if (start[a + 1:b] < np.maximum.accumulate(stop[a:b - 1])).any():
                return True
    return False


def _events(parts: list[list[_Part]], tempo: tuple[np.ndarray, np.ndarray, np.ndarray]) -> Events:
    flat = [p for track in parts for p in track]
    group = np.concatenate([np.full(len(p["start"]), g, np.int64) for g, p in enumerate(flat)] or [np.zeros(0, np.int64)])
    cc_group = np.concatenate([np.full(len(p["cc_time"]), g, np.int64) for g, p in enumerate(flat)] or [np.zeros(0, np.int64)])

    def joined(name: str) -> np.ndarray:
        return np.concatenate([p[name] for p in flat]) if flat else np.zeros(0, np.int64)

    end = joined("end")
    kept = end >= 0
    return Events(pitches=joined("pitch")[kept].astype(np.float64),
                  starts=_seconds(joined("start")[kept], tempo), ends=_seconds(end[kept], tempo),
                  velocities=joined("velocity")[kept].astype(np.float64), groups=group[kept],
                  pedal_groups=cc_group, pedal_times=_seconds(joined("cc_time"), tempo),
                  pedal_values=joined("cc_value"))


