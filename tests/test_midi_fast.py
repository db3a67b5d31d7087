"""The fast MIDI reader (runtime/midi_fast.py) gives pretty_midi's notes: the same pitch, step,
duration and velocity in the same order, on every file of tests/data, on hand-made files with
every pairing rule pretty_midi has, and on random well-formed files. Where it does not cover a
file it declines, and pretty_midi reads it. The whole ASAP and maestro-mini corpora are
compared by benchmarks/midi_reader.py (minutes of pretty_midi)."""
from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpx.runtime import midi, midi_fast
from mpx.runtime.errors import MidiError
from mpx.runtime.midi import read_notes

import smf
from conftest import DATA, MIDI_DIR, SEEDS_DIR

ALL_FILES = sorted(p for p in DATA.rglob("*") if p.is_file() and p.suffix.lower() in (".mid", ".midi"))
REAL_FILES = sorted(MIDI_DIR.glob("*.mid")) + sorted(SEEDS_DIR.glob("*.mid"))


def pretty_notes(data: bytes, name: str = "x.mid") -> np.ndarray | str:
    """What read_notes gives through pretty_midi alone (or the error it raises)."""
    try:
        return midi.read_notes(data, name=name, fast=False)
    except MidiError as exc:
        return str(exc)


def fast_notes(data: bytes, name: str = "x.mid") -> np.ndarray | str | None:
    """The fast reader's notes, None where it declines the file."""
    if midi_fast.read(data) is None:
        return None
    try:
        return midi.read_notes(data, name=name)
    except MidiError as exc:
        return str(exc)


def same(a: np.ndarray | str, b: np.ndarray | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


# -- the files the project ships --------------------------------------------------------------
@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(DATA)))
def test_every_test_file_reads_as_pretty_midi_reads_it(path: Path) -> None:
    data = path.read_bytes()
    expected = pretty_notes(data, path.name)
    try:
        got = read_notes(data, name=path.name)
    except MidiError as exc:
        got = str(exc)
    assert same(got, expected), f"{path.name}: fast {got if isinstance(got, str) else got.shape} vs " \
                                f"pretty_midi {expected if isinstance(expected, str) else expected.shape}"


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.name)
def test_real_performances_take_the_fast_path(path: Path) -> None:
    """Not a vacuous equality: every real performance of tests/data is read by symusic."""
    assert midi_fast.read(path.read_bytes()) is not None


# -- pretty_midi's pairing rules, one by one --------------------------------------------------
RULES = {
    # a key struck again before its note-off: pretty_midi ends both notes at that note-off
    "restruck": [(0, smf.on(60, 50)), (480, smf.on(60, 70)), (480, smf.off(60))],
    "restruck, two note-offs": [(0, smf.on(60, 50)), (480, smf.on(60, 70)), (480, smf.off(60)), (480, smf.off(60))],
    "restruck three times": [(0, smf.on(60, 1)), (10, smf.on(60, 2)), (10, smf.on(60, 3)), (10, smf.off(60)),
                             (10, smf.off(60)), (10, smf.off(60))],
    "restruck, then struck after": [(0, smf.on(60, 1)), (10, smf.on(60, 2)), (10, smf.off(60)), (10, smf.on(60, 3)),
                                    (10, smf.off(60))],
    # note-off and note-on of one key on one tick, in either order
    "off then on": [(0, smf.on(60, 50)), (480, smf.off(60)), (0, smf.on(60, 70)), (480, smf.off(60))],
    "on then off": [(0, smf.on(60, 50)), (480, smf.on(60, 70)), (0, smf.off(60)), (480, smf.off(60))],
    # a note-off on its note-on's tick: pretty_midi drops the note
    "zero length": [(0, smf.on(60, 50)), (0, smf.off(60)), (480, smf.off(60)), (0, smf.on(62)), (10, smf.off(62))],
    "zero length after a restrike": [(0, smf.on(60, 1)), (10, smf.off(60)), (0, smf.on(60, 2)), (0, smf.off(60)),
                                     (10, smf.off(60)), (0, smf.on(61)), (5, smf.off(61))],
    "left open": [(0, smf.on(60, 50)), (480, smf.on(62)), (480, smf.off(62))],
    "velocity 0 is a note-off": [(0, smf.on(60, 50)), (480, smf.on(60, 0))],
    "drums left out": [(0, smf.on(36, 90, 9)), (0, smf.on(60)), (100, smf.off(36, 9)), (100, smf.off(60))],
    "a program change mid-note": [(0, smf.on(60, 50)), (240, smf.program(5)), (240, smf.off(60)), (0, smf.on(61)),
                                  (10, smf.off(61))],
    "tempo changes": [(0, smf.tempo(400000)), (0, smf.on(60)), (480, smf.tempo(400000)), (0, smf.tempo(700000)),
                      (100, smf.off(60)), (0, smf.on(61)), (960, smf.tempo(250000)), (10, smf.off(61))],
}


@pytest.mark.parametrize("name", RULES)
@pytest.mark.parametrize("running_status", [False, True])
def test_pretty_midis_pairing_rules(name: str, running_status: bool) -> None:
    data = smf.one_track(RULES[name], running_status=running_status)
    got = fast_notes(data)
    assert got is not None, f"{name}: declined"
    assert same(got, pretty_notes(data))


def test_only_the_first_tracks_tempo_events_time_the_notes() -> None:
    """pretty_midi reads tempo from the first track only (symusic from all tracks)."""
    data = smf.smf([smf.track([(0, smf.tempo(300000)), (960, smf.tempo(900000))]),
                    smf.track([(0, smf.on(60)), (480, smf.tempo(250000)), (960, smf.off(60)), (0, smf.on(61)),
                               (960, smf.off(61))])])
    got = fast_notes(data)
    assert got is not None and same(got, pretty_notes(data))


def test_a_file_the_fast_reader_does_not_cover_is_read_by_pretty_midi() -> None:
    """Two instruments of one track sounding one key at once: declined, and read_notes still
    gives pretty_midi's notes."""
    data = smf.one_track([(0, smf.on(60, 50, 0)), (0, smf.on(60, 70, 1)), (480, smf.off(60, 0)), (0, smf.off(60, 1))])
    assert midi_fast.read(data) is None
    assert same(read_notes(data, name="x.mid"), pretty_notes(data))


def test_without_symusic_pretty_midi_reads_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(midi_fast, "symusic", None)
    data = REAL_FILES[0].read_bytes()
    assert midi_fast.read(data) is None
    assert same(read_notes(data, name="x.mid"), pretty_notes(data))


# -- random well-formed files -----------------------------------------------------------------
KEYS = st.sampled_from([60, 61, 62])  # three keys: restrikes and same-tick events are common
CHANNELS = st.sampled_from([0, 0, 0, 1, 9])
channel_event = st.one_of(
    st.builds(smf.on, KEYS, st.integers(0, 127), CHANNELS),
    st.builds(smf.off, KEYS, CHANNELS, st.integers(0, 127)),
    st.builds(smf.cc, st.sampled_from([64, 64, 7]), st.integers(0, 127), CHANNELS),
    st.builds(smf.program, st.integers(0, 3), CHANNELS),
)
other_event = st.one_of(
    st.builds(smf.tempo, st.integers(100_000, 2_000_000)),
    st.builds(smf.text, st.binary(max_size=5)),
    st.builds(smf.sysex, st.binary(max_size=5).map(lambda b: bytes(x & 0x7F for x in b))),
)
delta = st.sampled_from([0, 0, 0, 1, 5, 120, 480, 20000])
events = st.lists(st.tuples(delta, st.one_of(channel_event, channel_event, channel_event, other_event)),
                  max_size=40)


def check_against_pretty_midi(data: bytes) -> bool:
    """The property: the fast reader declines, or gives pretty_midi's notes (or its error)."""
    got = fast_notes(data)
    if got is None:
        return False
    expected = pretty_notes(data)
    assert same(got, expected), f"fast {got!r}\npretty_midi {expected!r}\nfile {data!r}"
    return True


SCALE = float(os.environ.get("MPX_FUZZ_SCALE", "1"))  # as in test_fuzz.py: > 1 for a longer hunt
FUZZ = settings(max_examples=max(1, int(300 * SCALE)), deadline=None, derandomize=SCALE == 1,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(tracks=st.lists(events, min_size=1, max_size=3), running_status=st.booleans(),
       division=st.sampled_from([96, 480, 960]))
def test_random_files_read_as_pretty_midi_reads_them(tracks: list[list[smf.Event]], running_status: bool,
                                                     division: int) -> None:
    check_against_pretty_midi(smf.smf([smf.track(t, running_status) for t in tracks], division=division))


def test_random_files_mostly_take_the_fast_path() -> None:
    """The property above is not vacuous: most random files are read by the fast reader."""
    covered = []

    @settings(max_examples=200, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(one=events, running_status=st.booleans())
    def sample(one: list[smf.Event], running_status: bool) -> None:
        covered.append(check_against_pretty_midi(smf.one_track(one, running_status=running_status)))

    sample()
    assert sum(covered) >= 0.5 * len(covered), f"{sum(covered)} of {len(covered)} read by the fast reader"


# -- long files -------------------------------------------------------------------------------
def long_file(notes: int, step_ticks: int = 9) -> bytes:
    """A type-0 file of `notes` notes, a note-on every `step_ticks` ticks (within pretty_midi's
    10^7-tick limit for 1M notes at 9), keys restruck while they sound, running status."""
    rng = np.random.default_rng(0)
    start = np.arange(notes, dtype=np.int64) * step_ticks
    end = start + rng.integers(5, 60, notes)
    pitch = rng.integers(21, 109, notes)
    velocity = rng.integers(20, 120, notes)
    ticks = np.concatenate([start, end])
    kinds = np.concatenate([np.ones(notes, np.int64), np.zeros(notes, np.int64)])
    order = np.lexsort((kinds, ticks))  # note-offs first on a tick
    ticks, kinds = ticks[order], kinds[order]
    keys = np.concatenate([pitch, pitch])[order]
    values = np.concatenate([velocity, np.zeros(notes, np.int64)])[order]
    deltas = np.diff(ticks, prepend=0)
    assert deltas.max() < 128  # one-byte delta times: the events are fixed-size
    body = np.stack([deltas, keys, values], axis=1).astype(np.uint8)  # running status 0x90
    head = b"\x00\xff\x51\x03\x07\xa1\x20" + b"\x00\x90" + bytes(body[0, 1:])
    track = head + body[1:].tobytes() + b"\x00\xff\x2f\x00"
    return smf.smf([b"MTrk" + len(track).to_bytes(4, "big") + track], division=960)


def test_a_long_file_parses_as_pretty_midi_parses_it() -> None:
    data = long_file(20_000)
    assert check_against_pretty_midi(data)


def test_a_million_notes_parse_in_seconds(tmp_path: Path) -> None:
    """pretty_midi takes 20-25 s of CPU for this file (mido's pure-Python reader)."""
    data = long_file(1_000_000)
    cpu = time.process_time()
    notes = read_notes(data, name="long.mid")
    cpu = time.process_time() - cpu
    assert len(notes) == 1_000_000
    assert cpu < 6.0, f"{cpu:.1f} s of CPU"


def test_pretty_midis_warnings_stay_quiet() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_notes(REAL_FILES[0].read_bytes(), name="x.mid")


def test_whatever_the_fast_reader_raises_it_falls_back_to_pretty_midi(monkeypatch: pytest.MonkeyPatch) -> None:
    """A gap in the fast reader (its parser raising something new) is never the user's error."""
    class ParserBug(Exception):
        pass

    def broken(data: bytes) -> None:
        raise ParserBug("something new")

    data = REAL_FILES[0].read_bytes()
    monkeypatch.setattr(midi_fast, "read", broken)
    assert same(read_notes(data, name="x.mid"), pretty_notes(data))
