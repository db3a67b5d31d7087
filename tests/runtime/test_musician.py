"""What a musician asks of `mpx run` (torch-free tier, the bundled ONNX model): which part of the
seed primes the model (--primer-from), a length in seconds (--seconds), a file whose tempo is the
seed's (--tempo auto), and a word when the continuation falls into a loop (greedy decoding)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from mpx.runtime import GenerationOptions, load, read_notes
from mpx.runtime.errors import OptionsError
from mpx.runtime.generate import NOTES_PER_SECOND, notes_for
from mpx.runtime.musical import estimate_tempo
from mpx.runtime.run import WriteOptions, generate_files

from clitools import mpx, one_line_error
from conftest import ARTIFACTS, run_cli

SEED = ARTIFACTS / "seed.mid"


@pytest.fixture(scope="module")
def generator():  # type: ignore[no-untyped-def]
    return load(None, "onnx", threads=1)


@pytest.fixture(scope="module")
def seed_notes() -> np.ndarray:
    return read_notes(SEED)


def onsets(notes: np.ndarray) -> np.ndarray:
    times = np.cumsum(notes[:, 1], dtype=np.float64)
    return times - times[0]


# -- which part of the seed primes the model ------------------------------------------------------
@pytest.mark.parametrize("where, first", [("start", 0), (0, 0), ("300", 300), (300, 300)])
def test_the_primer_begins_where_asked(generator, seed_notes: np.ndarray, where: object, first: int) -> None:  # type: ignore[no-untyped-def]
    primer = generator.primer_from(seed_notes, GenerationOptions(primer_from=where, primer_notes=40), "seed.mid")
    np.testing.assert_array_equal(primer, seed_notes[first: first + 40])
    default = generator.primer_from(seed_notes, GenerationOptions(primer_notes=40), "seed.mid")
    np.testing.assert_array_equal(default, seed_notes[-40:])  # unchanged: the seed's ending


@pytest.mark.parametrize("where", ["60s", "1:00", "60.0s"])
def test_a_time_names_the_first_note_that_starts_there(generator, seed_notes: np.ndarray, where: str) -> None:  # type: ignore[no-untyped-def]
    times = onsets(seed_notes)
    first = int(np.argmax(times >= 60.0))
    assert times[first - 1] < 60.0 <= times[first]
    primer = generator.primer_from(seed_notes, GenerationOptions(primer_from=where), "seed.mid")
    np.testing.assert_array_equal(primer, seed_notes[first: first + generator.spec.seq_len])


def test_from_the_start_the_continuation_follows_the_opening(generator, seed_notes: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    done = generator.rollout(seed_notes, GenerationOptions(notes=16, seed=3, primer_from="start"))
    np.testing.assert_array_equal(done.primer, seed_notes[:generator.spec.seq_len])
    same = generator.rollout(seed_notes[:generator.spec.seq_len], GenerationOptions(notes=16, seed=3))
    np.testing.assert_array_equal(done.notes, same.notes)  # as if the seed were only its opening


@pytest.mark.parametrize("where, message", [
    ("bogus", "primer_from must be start, a note index (0 is the first note) or a time into the seed (30s, 1:30), "
              "got 'bogus'"),
    ("-2", "primer_from must be start"),
    ("5000", "primer_from '5000' is past the end of seed.mid (1358 notes, 235.0 s)"),
    ("4:00", "primer_from '4:00' is past the end of seed.mid (1358 notes, 235.0 s)"),
])
def test_a_primer_start_that_is_no_place_in_the_seed_is_refused(generator, seed_notes: np.ndarray, where: str,  # type: ignore[no-untyped-def]
                                                                 message: str) -> None:
    with pytest.raises(OptionsError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        generator.primer_from(seed_notes, GenerationOptions(primer_from=where), "seed.mid")
    assert caught.value.field == "primer_from"


def test_too_few_notes_after_the_start_for_primer_notes(generator, seed_notes: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OptionsError, match="primer_notes 20: seed.mid has only 8 notes from note 1350 on"):
        generator.primer_from(seed_notes, GenerationOptions(primer_from=1350, primer_notes=20), "seed.mid")
    primer = generator.primer_from(seed_notes, GenerationOptions(primer_from=1350), "seed.mid")
    assert len(primer) == 8  # without --primer-notes: what is left


# -- a length in seconds ----------------------------------------------------------------------------
def test_seconds_generate_until_each_take_lasts_that_long(generator, seed_notes: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    done = generator.rollout(seed_notes, GenerationOptions(seconds=20, notes=notes_for(20), num_outputs=3, seed=1))
    assert done.lengths is not None and len(done.takes) == 3
    for take, every in zip(done.takes, done.notes):
        starts = np.cumsum(take[:, 1], dtype=np.float64)  # from the primer's last onset
        assert starts[-1] < 20 <= np.cumsum(every[:, 1], dtype=np.float64)[len(take)]  # the next note is past it
    assert len({len(take) for take in done.takes}) > 1  # each take in its own number of notes
    np.testing.assert_array_equal(generator.generate(seed_notes, seconds=20, notes=notes_for(20), num_outputs=3,
                                                     seed=1)[2], done.takes[2])


def test_notes_cap_a_length_in_seconds_and_say_so(generator, seed_notes: np.ndarray,  # type: ignore[no-untyped-def]
                                                 caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        notes = generator.generate(seed_notes, 30, seconds=600, seed=1)
    assert len(notes) == 30 and "stopped at 30 notes (the most asked for)" in caplog.text
    assert "s into the 600 s asked for" in caplog.text
    assert notes_for(20) == 20 * NOTES_PER_SECOND


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), 10**9])
def test_seconds_out_of_range_are_refused(value: float) -> None:
    with pytest.raises(OptionsError, match="seconds must be a number in") as caught:
        GenerationOptions(seconds=value)
    assert caught.value.field == "seconds"


def test_run_for_seconds_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "take.mid"
    code, said, err = mpx(capsys, "run", str(SEED), "--seconds", "15", "--seed", "2", "--num-outputs", "2",
                          "--out", str(out))
    assert code == 0, err
    for k in (1, 2):
        notes = read_notes(tmp_path / f"take-{k}.mid")
        assert onsets(notes)[-1] < 15  # (a file starts at its first note: its first step is not in it)
        assert f"take-{k}.mid ({len(notes)} notes," in said  # each file says its own count
    code, _, err = mpx(capsys, "run", str(SEED), "--seconds", "0", "--out", str(tmp_path / "x.mid"))
    one_line_error(code, err, "--seconds must be a number in (0, 86,400] s, got 0.0")


# -- the tempo a DAW reads ----------------------------------------------------------------------------
def written_tempo(path: Path) -> float:
    return float(pretty_midi.PrettyMIDI(str(path)).get_tempo_changes()[1][0])


def test_tempo_auto_writes_the_seeds_tempo_and_keeps_the_times(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                seed_notes: np.ndarray) -> None:
    auto, fixed = tmp_path / "auto.mid", tmp_path / "fixed.mid"
    code, said, err = mpx(capsys, "run", str(SEED), "--notes", "64", "--seed", "5", "--tempo", "auto", "--out", str(auto))
    assert code == 0, err
    expected = round(estimate_tempo(seed_notes), 1)  # type: ignore[arg-type]
    assert abs(written_tempo(auto) - expected) < 0.01 and f"{expected:g} bpm from the seed" in said
    code, _, err = mpx(capsys, "run", str(SEED), "--notes", "64", "--seed", "5", "--out", str(fixed))
    assert code == 0 and written_tempo(fixed) == 120.0
    np.testing.assert_allclose(read_notes(auto), read_notes(fixed), atol=2e-3)  # the same notes, in seconds


def test_a_seed_too_short_for_a_tempo_says_so(generator, tmp_path: Path, seed_notes: np.ndarray,  # type: ignore[no-untyped-def]
                                             caplog: pytest.LogCaptureFixture) -> None:
    short = tmp_path / "short.csv"
    short.write_text("pitch,step,duration,velocity\n" + "\n".join(f"{60 + i},0.5,0.4,80" for i in range(4)) + "\n")
    with caplog.at_level(logging.WARNING):
        result = generate_files(generator, short, tmp_path / "x.mid", GenerationOptions(notes=8, seed=0),
                                WriteOptions(tempo="auto"))
    assert result.tempo == 120.0 and "short.csv: too few notes to tell its tempo; the file says 120 bpm" in caplog.text


@pytest.mark.parametrize("value", ["fast", "0", "2000"])
def test_a_tempo_that_is_no_tempo_is_refused(value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = mpx(capsys, "run", str(SEED), "--tempo", value, "--out", str(tmp_path / "x.mid"))
    one_line_error(code, err, "--tempo must be a number")
    assert not (tmp_path / "x.mid").exists()


# -- greedy decoding and its loop ---------------------------------------------------------------------
def test_a_take_that_ends_in_a_loop_is_named(tmp_path: Path) -> None:
    greedy = run_cli("run", str(SEED), "--temperature", "0", "--seed", "0", "--out", str(tmp_path / "g.mid"))
    assert greedy.returncode == 0, greedy.stderr
    assert greedy.stderr.startswith(f"mpx: {tmp_path / 'g.mid'}: the last 64 notes repeat ") and "held" in greedy.stderr
    assert "the continuation fell into a loop (greedy decoding: temperature 0" in greedy.stderr
    assert greedy.stderr.count("\n") == 1
    sampled = run_cli("run", str(SEED), "--seed", "0", "--out", str(tmp_path / "s.mid"))
    assert sampled.returncode == 0 and sampled.stderr == ""  # sampled music: no word
