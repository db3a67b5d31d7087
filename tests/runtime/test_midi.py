"""MIDI codec: MIDI <-> notes [N, 4], round trips, CSV, and every bad file in tests/data/bad-midi."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpx.runtime.errors import MidiError, OptionsError
from mpx.runtime.midi import DEFAULT_VELOCITY, RESOLUTION, notes_from_events, read_notes, to_pretty_midi, write_midi
from mpx.runtime.notes_csv import read_csv, write_csv

from conftest import BAD_DIR

TICK = 60.0 / (120.0 * RESOLUTION)  # seconds per tick of written files (120 bpm)


def _midi_with(tmp_path: Path, instruments: list[tuple[int, bool, list[tuple[int, float, float, int]]]]) -> Path:
    midi = pretty_midi.PrettyMIDI(resolution=960, initial_tempo=120)
    for program, is_drum, notes in instruments:
        inst = pretty_midi.Instrument(program=program, is_drum=is_drum)
        inst.notes = [pretty_midi.Note(velocity=v, pitch=p, start=s, end=e) for p, s, e, v in notes]
        midi.instruments.append(inst)
    path = tmp_path / "made.mid"
    midi.write(str(path))
    return path


def test_notes_are_pitch_step_duration_velocity_ordered_by_start_then_pitch(tmp_path: Path) -> None:
    path = _midi_with(tmp_path, [
        (0, False, [(64, 1.0, 1.5, 70), (60, 0.5, 2.0, 30)]),
        (40, False, [(55, 1.0, 1.25, 100), (72, 0.0, 0.25, 127)]),
        (0, True, [(36, 0.75, 0.8, 90)]),  # drums: left out by default
    ])
    notes = read_notes(path)
    assert notes.dtype == np.float32 and notes.shape == (4, 4)
    np.testing.assert_array_equal(notes[:, 0], [72, 60, 55, 64])
    np.testing.assert_allclose(notes[:, 1], [0.0, 0.5, 0.5, 0.0], atol=1e-3)
    np.testing.assert_allclose(notes[:, 2], [0.25, 1.5, 0.25, 0.5], atol=1e-3)
    np.testing.assert_array_equal(notes[:, 3], [127, 30, 100, 70])


def test_instrument_option_selects_instruments(tmp_path: Path) -> None:
    path = _midi_with(tmp_path, [(0, False, [(60, 0.0, 1.0, 80)]), (1, False, [(70, 0.5, 1.0, 80), (71, 0.6, 1.0, 80)])])
    assert read_notes(path, instruments=[1])[:, 0].tolist() == [70, 71]
    with pytest.raises(MidiError, match="no instrument 5"):
        read_notes(path, instruments=[5])


def test_tempo_changes_are_handled_in_seconds(tmp_path: Path) -> None:
    midi = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=60)
    inst = pretty_midi.Instrument(0)
    inst.notes = [pretty_midi.Note(80, 60 + i, i * 0.5, i * 0.5 + 0.4) for i in range(6)]
    midi.instruments.append(inst)
    path = tmp_path / "tempo.mid"
    midi.write(str(path))
    notes = read_notes(path)
    np.testing.assert_allclose(notes[1:, 1], 0.5, atol=2e-3)
    np.testing.assert_allclose(notes[:, 2], 0.4, atol=2e-3)


note_rows = st.lists(
    st.tuples(st.integers(0, 127), st.floats(0.0, 2.0), st.floats(0.0, 3.0), st.integers(1, 127)),
    min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(rows=note_rows)
def test_round_trip_midi_notes_midi_notes_within_one_tick(rows: list[tuple[int, float, float, int]], tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("rt")
    first = write_midi(np.array(rows, np.float32), tmp / "a.mid")
    notes1 = read_notes(first)
    notes2 = read_notes(write_midi(notes1, tmp / "b.mid"))
    assert notes1.shape == notes2.shape == (len(rows), 4)
    np.testing.assert_array_equal(notes1[:, [0, 3]], notes2[:, [0, 3]])
    np.testing.assert_allclose(notes1[:, 1:3], notes2[:, 1:3], atol=TICK * 1.01)


@settings(max_examples=60, deadline=None)
@given(rows=note_rows)
def test_written_notes_come_back_within_one_tick_when_same_pitches_do_not_overlap(rows: list[tuple[int, float, float, int]], tmp_path_factory: pytest.TempPathFactory) -> None:
    # MIDI cannot keep two sounding notes of one pitch apart; apart from that the codec is exact.
    pitches = np.array([r[0] for r in rows], np.float64)
    starts = np.cumsum([r[1] for r in rows])
    ends = starts + np.maximum([r[2] for r in rows], 2 * TICK)
    velocities = np.array([r[3] for r in rows], np.float64)
    keep: list[int] = []
    for i in range(len(rows)):
        if all(pitches[j] != pitches[i] or ends[j] < starts[i] - 2 * TICK or ends[i] < starts[j] - 2 * TICK
               for j in keep):
            keep.append(i)
    expected = notes_from_events(pitches[keep], starts[keep] - starts[keep][0], ends[keep] - starts[keep][0],
                                 velocities[keep])
    back = read_notes(write_midi(expected, tmp_path_factory.mktemp("rt") / "a.mid"))
    assert back.shape == expected.shape

    def by_pitch_then_start(notes: np.ndarray) -> np.ndarray:
        # notes starting within a tick of each other may swap places; per pitch the order is fixed
        start = np.cumsum(notes[:, 1].astype(np.float64))
        table = np.stack([notes[:, 0], start, notes[:, 2], notes[:, 3]], axis=1)
        return table[np.lexsort((start, notes[:, 0]))]

    got, want = by_pitch_then_start(back), by_pitch_then_start(expected)
    np.testing.assert_array_equal(got[:, [0, 3]], want[:, [0, 3]])
    np.testing.assert_allclose(got[:, 1:3], want[:, 1:3], atol=TICK * 1.01)


def test_zero_length_notes_still_come_back_as_notes(tmp_path: Path) -> None:
    notes = np.array([[60, 0.0, 0.0, 80], [62, 0.1, 0.0, 80], [64, 0.1, 0.5, 80]], np.float32)
    back = read_notes(write_midi(notes, tmp_path / "z.mid"))
    assert back.shape == (3, 4)
    assert (back[:, 2] > 0).all()


def test_write_options_program_velocity_tempo(tmp_path: Path) -> None:
    notes = np.array([[60, 0.0, 0.5, 20], [64, 0.5, 0.5, 110]], np.float32)
    own = pretty_midi.PrettyMIDI(str(write_midi(notes, tmp_path / "own.mid")))
    assert [n.velocity for n in own.instruments[0].notes] == [20, 110]  # the notes' own dynamics
    midi = pretty_midi.PrettyMIDI(str(write_midi(notes, tmp_path / "o.mid", program=40, velocity=77, tempo=90)))
    inst = midi.instruments[0]
    assert inst.program == 40 and {n.velocity for n in inst.notes} == {77}
    assert midi.get_tempo_changes()[1][0] == pytest.approx(90.0, rel=1e-4)  # microsecond tempo units
    for bad in ({"program": 128}, {"velocity": 0}, {"tempo": -5.0}):
        with pytest.raises(OptionsError):
            to_pretty_midi(notes, **bad)


def test_csv_round_trip_is_exact(tmp_path: Path, seed_notes: np.ndarray) -> None:
    path = write_csv(seed_notes[:50], tmp_path / "n.csv")
    assert path.read_text().splitlines()[0] == "pitch,step,duration,velocity"
    np.testing.assert_array_equal(read_csv(path), seed_notes[:50])
    (tmp_path / "bad.csv").write_text("pitch,step,duration,velocity\n60,0.1,0.2,80\n61,0.1\n")
    with pytest.raises(MidiError, match="line 3"):
        read_csv(tmp_path / "bad.csv")


def test_csv_without_velocity_reads_with_the_default_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "v1.csv").write_text("pitch,step,duration\n60,0,0.5\n62,0.5,0.5\n")
    with caplog.at_level(logging.WARNING):
        notes = read_csv(tmp_path / "v1.csv")
    assert notes.shape == (2, 4) and (notes[:, 3] == DEFAULT_VELOCITY).all()
    assert "no velocity column" in caplog.text and "v1.csv" in caplog.text


@pytest.mark.parametrize("line, why", [("200,0.1,0.2,80", "pitch"), ("60,-0.1,0.2,80", "step"),
                                       ("60,0.1,nan,80", "nan"), ("60,0.1,0.2,300", "velocity"),
                                       ("60.5,0.1,0.2,80", "fractional pitch")])
def test_csv_values_that_are_no_note_are_refused_not_clamped(tmp_path: Path, line: str, why: str) -> None:
    (tmp_path / "x.csv").write_text(f"pitch,step,duration,velocity\n60,0,0.5,80\n{line}\n")
    with pytest.raises(MidiError, match=re.escape(f"x.csv: line 3: {line!r} is not a note")):
        read_csv(tmp_path / "x.csv")  # the line number and the line as written (no float32 noise)


BAD_FILES = sorted(p for p in BAD_DIR.rglob("*.mid"))


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.name for p in BAD_FILES])
def test_every_bad_file_gives_a_clear_error_or_parses(path: Path) -> None:
    try:
        notes = read_notes(path)
    except MidiError as exc:
        message = str(exc)
        assert str(path) in message and "\n" not in message
        assert exc.reason
    else:
        # symusic_RunTimeError_unexpected_EOF.mid is damaged for symusic only: pretty_midi reads it.
        assert path.name == "symusic_RunTimeError_unexpected_EOF.mid"
        assert notes.shape == (3141, 4)


def test_missing_and_directory_paths_are_named(tmp_path: Path) -> None:
    with pytest.raises(MidiError, match="no such file"):
        read_notes(tmp_path / "nope.mid")
    with pytest.raises(MidiError, match="is a directory"):
        read_notes(tmp_path)
