"""--pedal (issue 19) where a user reads MIDI: `mpx notes`, `mpx run` (the seed), `mpx train` and
`mpx eval` (the corpus) read sounding durations as runtime/pedal.py says; the notes cache keeps
key-down and sounding notes apart; the spec records which a model was trained on, and a seed
read with the other kind is said in one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mpx.runtime.midi import read_notes
from mpx.runtime.notes_csv import read_csv
from mpx.runtime.run import pedal_mismatch
from mpx.train.cache import NoteCache
from mpx.train.corpus import load_corpus
from mpx.train.options import TrainOptions

from clitools import mpx
from conftest import MIDI_DIR, TINY_MODEL

# the shortest test file; every MAESTRO file of tests/data/midi uses the pedal
PIECE = MIDI_DIR / "MIDI-Unprocessed_R1_D1-1-8_mid--AUDIO-from_mp3_02_R1_2015_wav--1_a.mid"


def durations(pedal: bool) -> np.ndarray:
    return read_notes(PIECE, pedal=pedal)[:, 2]


def test_the_test_piece_uses_the_pedal() -> None:
    key_down, sounding = durations(False), durations(True)
    assert len(key_down) == len(sounding)
    assert (sounding >= key_down - 1e-6).all() and (sounding > key_down + 1e-3).sum() >= 20


@pytest.mark.parametrize("pedal", [False, True])
def test_notes_pedal_writes_sounding_durations(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                               pedal: bool) -> None:
    out = tmp_path / "notes.csv"
    code, _, err = mpx(capsys, "notes", str(PIECE), "-o", str(out), *(["--pedal"] if pedal else []))
    assert code == 0, err
    np.testing.assert_allclose(read_csv(out)[:, 2], durations(pedal), atol=1e-4)


def said_pedal(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The lines about --pedal logged (main()'s handler prints each as one `mpx: ` line)."""
    lines = [r.getMessage() for r in caplog.records if "--pedal" in r.getMessage()]
    caplog.clear()
    return lines


def test_run_pedal_reads_the_seed_with_sounding_durations(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    primers = {}
    for pedal in (False, True):
        out = tmp_path / f"take-{pedal}.csv"
        code, _, err = mpx(capsys, "run", str(PIECE), "-o", str(out), "--notes", "4", "--seed", "1",
                           "--primer-notes", "32", "--include-primer", "--threads", "1",
                           *(["--pedal"] if pedal else []))
        assert code == 0, err
        primers[pedal] = read_csv(out)[:32]
        # the bundled model was trained on key-down durations: --pedal is said, in one line
        said = said_pedal(caplog)
        assert len(said) == (1 if pedal else 0) and all("\n" not in line for line in said), said
        if pedal:
            assert "key-down" in said[0] and str(PIECE) in said[0]
    for pedal, primer in primers.items():
        np.testing.assert_allclose(primer[:, 2], durations(pedal)[-32:], atol=1e-4)
    assert not np.allclose(primers[True][:, 2], primers[False][:, 2])


def test_a_model_trained_on_sounding_durations_says_so_for_a_key_down_seed() -> None:
    sounding, key_down = {"pedal": True}, {"pedal": False}
    message = pedal_mismatch(sounding, False, "seed.mid")
    assert message and message.startswith("seed.mid: ") and "add --pedal" in message and "\n" not in message
    assert pedal_mismatch(sounding, True, "seed.mid") is None
    assert pedal_mismatch(key_down, False, "seed.mid") is None
    assert pedal_mismatch({}, False, "seed.mid") is None  # models from before the option: key-down
    assert pedal_mismatch(sounding, False, "seed.csv") is None  # a CSV holds durations as written


def test_the_cache_keeps_key_down_and_sounding_notes_apart(tmp_path: Path) -> None:
    cache = NoteCache(tmp_path / "cache")
    for _ in range(2):  # the second round is served by the cache: each kind from its own entries
        for pedal in (False, True, False):
            corpus = load_corpus([PIECE], cache=cache, workers=1, splits=None, pedal=pedal)
            (notes,) = corpus.notes
            np.testing.assert_allclose(notes[:, 2], durations(pedal), atol=1e-6)
    assert corpus.parsed == 0
    assert len(list((tmp_path / "cache").rglob("*.notes"))) == 4  # two entries, two packs


def test_the_split_does_not_depend_on_the_pedal(tmp_path: Path) -> None:
    sides = [load_corpus([MIDI_DIR], cache=NoteCache(tmp_path / "cache"), workers=1, pedal=pedal).splits
             for pedal in (False, True)]
    assert sides[0] == sides[1]


def test_options_hold_the_pedal() -> None:
    assert TrainOptions().pedal is False
    assert TrainOptions(pedal=True).to_dict()["pedal"] is True
    saved = TrainOptions().to_dict()
    del saved["pedal"]
    assert TrainOptions.from_dict(saved).pedal is False  # a checkpoint from before the option
    with pytest.raises(Exception, match="pedal"):
        TrainOptions(pedal="yes")  # type: ignore[arg-type]


def test_train_pedal_is_recorded_in_the_spec_and_eval_reads_it(capsys: pytest.CaptureFixture[str],
                                                               tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    model = TINY_MODEL
    out = tmp_path / "run"
    code, _, err = mpx(capsys, "train", str(PIECE), "--out", str(out), "--pedal", "--epochs", "1",
                       "--batch-size", "4", "--seq-len", "32", "--primer-len", "16", "--hidden", str(model.hidden),
                       "--layers", str(model.layers), "--embedding", str(model.embedding),
                       "--head-hidden", str(model.head_hidden), "--workers", "1",
                       "--cache-dir", str(tmp_path / "cache"), "--device", "cpu")
    assert code == 0, err
    code, info, err = mpx(capsys, "info", str(out / "best.safetensors"), "--json")
    assert code == 0, err
    assert json.loads(info)["spec"]["training"]["pedal"] is True
    # eval of that model: without --pedal one line says so; with it, nothing
    caplog.clear()
    for pedal in (False, True):
        code, report, err = mpx(capsys, "eval", str(out / "best.safetensors"), str(PIECE), "--mode", "stateful",
                                "--json", "--cache-dir", str(tmp_path / "cache"), *(["--pedal"] if pedal else []))
        assert code == 0, err
        assert sum("add --pedal" in line for line in said_pedal(caplog)) == (0 if pedal else 1), err
        assert json.loads(report)


# -- bad input: pedal events and no notes; a pedal never lifted ----------------------------------
BEAT = 0.5  # smf's default tempo (120 bpm), 480 ticks a beat


@pytest.fixture
def pedal_only(tmp_path: Path) -> Path:
    import smf
    path = tmp_path / "pedal-only.mid"
    path.write_bytes(smf.one_track([(0, smf.pedal(True)), (480, smf.pedal(False)), (480, smf.pedal(True))]))
    return path


@pytest.mark.parametrize("command", ["notes", "run"])
def test_pedal_and_no_notes_is_one_line_naming_the_file(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                        pedal_only: Path, command: str) -> None:
    from clitools import one_line_error
    code, _, err = mpx(capsys, command, str(pedal_only), "-o", str(tmp_path / "out.csv"), "--pedal")
    one_line_error(code, err, "pedal-only.mid", "holds no notes")
    assert not (tmp_path / "out.csv").exists()


def test_pedal_and_no_notes_in_a_corpus_is_skipped_with_its_reason(tmp_path: Path, pedal_only: Path) -> None:
    import shutil
    shutil.copy(PIECE, tmp_path / PIECE.name)
    corpus = load_corpus([tmp_path], cache=NoteCache(tmp_path / "cache"), workers=1, pedal=True)
    assert len(corpus.notes) == 1 and corpus.summary()["skipped"] == 1


def test_a_pedal_never_lifted_holds_notes_to_the_last_event(capsys: pytest.CaptureFixture[str],
                                                            tmp_path: Path) -> None:
    import smf
    source = tmp_path / "held.mid"
    source.write_bytes(smf.one_track([(0, smf.pedal(True)), (0, smf.on(60)), (240, smf.off(60)), (0, smf.on(64)),
                                      (960, smf.off(64))]))
    for pedal, expected in ((False, [BEAT / 2, 2 * BEAT]), (True, [2.5 * BEAT, 2 * BEAT])):
        out = tmp_path / f"held-{pedal}.csv"
        code, _, err = mpx(capsys, "notes", str(source), "-o", str(out), *(["--pedal"] if pedal else []))
        assert code == 0, err
        np.testing.assert_allclose(read_csv(out)[:, 2], expected, atol=1e-4)
