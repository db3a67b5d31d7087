"""The sustain pedal (issue 19): read_notes(pedal=True) gives sounding durations by the rule of
Magenta's note-sequence code; checked against a line-by-line port of that code on random notes
and pedal events, and on hand-made MIDI files, through both readers."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpx.runtime import pedal
from mpx.runtime.errors import MidiError
from mpx.runtime.midi import read_notes

import smf

SUSTAIN_ON, SUSTAIN_OFF, NOTE_ON, NOTE_OFF = 0, 1, 2, 3


def magenta(notes: list[dict], ccs: list[dict]) -> list[dict]:
    """sequences_lib._apply_sustain_control_changes (note_seq), ported line by line: notes are
    dicts with start, end, pitch, group (instrument); ccs with time, value, group."""
    notes = [dict(n) for n in notes]
    events = [(n["start"], NOTE_ON, n) for n in notes] + [(n["end"], NOTE_OFF, n) for n in notes]
    events += [(c["time"], SUSTAIN_ON if c["value"] >= 64 else SUSTAIN_OFF, c) for c in ccs]
    events.sort(key=lambda e: (e[0], e[1]))
    active: dict[int, list[dict]] = {}
    sus: dict[int, bool] = {}
    deleted = []
    time = 0.0
    for time, kind, event in events:
        group = event["group"]
        if kind == SUSTAIN_ON:
            sus[group] = True
        elif kind == SUSTAIN_OFF:
            sus[group] = False
            still = []
            for note in active.get(group, []):
                if note["end"] < time:
                    note["end"] = time
                else:
                    still.append(note)
            active[group] = still
        elif kind == NOTE_ON:
            if sus.get(group, False):
                still = []
                for note in active.get(group, []):
                    if note["pitch"] == event["pitch"]:
                        note["end"] = time
                        if note["start"] == note["end"]:
                            deleted.append(note)
                    else:
                        still.append(note)
                active[group] = still
            active.setdefault(group, []).append(event)
        elif kind == NOTE_OFF:
            if not sus.get(group, False) and event in active.get(group, []):
                active[group].remove(event)
    for group_notes in active.values():
        for note in group_notes:
            note["end"] = time
    return [n for n in notes if not any(n is d for d in deleted)]


def ours(notes: list[dict], ccs: list[dict]) -> list[dict]:
    arrays = {k: np.array([n[k] for n in notes], np.float64) for k in ("start", "end", "pitch")}
    groups = np.array([n["group"] for n in notes], np.int64)
    ends, kept = pedal.sounding(arrays["start"], arrays["end"], arrays["pitch"], groups,
                                np.array([c["group"] for c in ccs], np.int64),
                                np.array([c["time"] for c in ccs], np.float64),
                                np.array([c["value"] for c in ccs], np.int64))
    return [{**n, "end": float(e)} for n, e, k in zip(notes, ends, kept) if k]


time = st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0])  # few values: ties are common
note = st.builds(lambda s, d, p, g: {"start": s, "end": s + d, "pitch": p, "group": g},
                 time, st.sampled_from([0.5, 1.0, 2.5]), st.sampled_from([60, 61]), st.sampled_from([0, 0, 1]))
control = st.builds(lambda t, v, g: {"time": t, "value": v, "group": g},
                    time, st.sampled_from([0, 63, 64, 127]), st.sampled_from([0, 0, 1]))


@settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(notes=st.lists(note, max_size=12), ccs=st.lists(control, max_size=8))
def test_sustain_follows_magentas_rule(notes: list[dict], ccs: list[dict]) -> None:
    notes.sort(key=lambda n: (n["start"], n["pitch"], n["end"]))  # read_notes' processing order
    expected = magenta(notes, ccs)
    got = ours(notes, ccs)
    assert [(n["start"], n["end"], n["pitch"]) for n in got] == [(n["start"], n["end"], n["pitch"]) for n in expected]


# -- through read_notes, both readers ---------------------------------------------------------
BEAT = 0.5  # seconds per 480 ticks at the default 120 bpm


def both(data: bytes, **options: object) -> np.ndarray:
    fast = read_notes(data, name="pedal.mid", pedal=True, **options)
    reference = read_notes(data, name="pedal.mid", pedal=True, fast=False, **options)
    np.testing.assert_array_equal(fast, reference)
    return fast


def test_a_note_released_under_the_pedal_sounds_until_the_pedal_lifts() -> None:
    data = smf.one_track([(0, smf.pedal(True)), (0, smf.on(60)), (480, smf.off(60)), (960, smf.pedal(False)),
                          (0, smf.on(62)), (480, smf.off(62))])
    notes = both(data)
    np.testing.assert_allclose(notes[:, 2], [3 * BEAT, BEAT])     # 60 sounds to the lift, 62 as held
    np.testing.assert_allclose(read_notes(data, name="x.mid")[:, 2], [BEAT, BEAT])  # pedal=False: as held


def test_a_sustained_note_ends_when_its_key_is_struck_again() -> None:
    data = smf.one_track([(0, smf.pedal(True)), (0, smf.on(60)), (240, smf.off(60)), (240, smf.on(60)),
                          (240, smf.off(60)), (960, smf.pedal(False))])
    notes = both(data)
    np.testing.assert_allclose(notes[:, 2], [BEAT, 2.5 * BEAT])  # the first ends at the second strike


def test_the_pedal_acts_on_its_own_channel_only() -> None:
    data = smf.one_track([(0, smf.pedal(True, channel=1)), (0, smf.on(60)), (480, smf.off(60)), (0, smf.on(62, channel=1)),
                          (480, smf.off(62, channel=1)), (960, smf.pedal(False, channel=1))])
    np.testing.assert_allclose(both(data)[:, 2], [BEAT, 3 * BEAT])  # 62 (channel 1) to the lift


def test_a_pedal_held_for_the_whole_file_holds_notes_to_its_last_event() -> None:
    data = smf.one_track([(0, smf.pedal(True)), (0, smf.on(60)), (240, smf.off(60)), (0, smf.on(64)),
                          (960, smf.off(64))])
    notes = both(data)
    np.testing.assert_allclose(notes[:, 1], [0.0, BEAT / 2])
    np.testing.assert_allclose(notes[:, 2], [2.5 * BEAT, 2 * BEAT])  # both to the last note-off


def test_pedal_events_and_no_notes_is_a_file_without_notes() -> None:
    data = smf.one_track([(0, smf.pedal(True)), (480, smf.pedal(False)), (480, smf.pedal(True))])
    for options in ({"pedal": True}, {"pedal": True, "fast": False}, {}):
        with pytest.raises(MidiError, match="pedal.mid: holds no notes"):
            read_notes(data, name="pedal.mid", **options)


def test_pedal_on_real_performances_lengthens_notes_and_agrees_between_readers(midi_files) -> None:  # type: ignore[no-untyped-def]
    for path in midi_files:
        data = path.read_bytes()
        held, sounding = read_notes(data, name=path.name), both(data)
        assert len(sounding) <= len(held)
        assert np.median(sounding[:, 2]) > np.median(held[:, 2])
