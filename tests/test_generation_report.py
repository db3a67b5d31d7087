"""The generation report's contract v3 figures (runtime/report.py, `mpx eval --generation`):
drift per quarter, pitch-interval overlap, control adherence, the default number of pieces."""
from __future__ import annotations

import json
import math
import types
from pathlib import Path

import numpy as np
import pytest
from clitools import mpx
from conftest import ARTIFACTS, MIDI_DIR, run_cli, torch_blocked

from mpx.runtime import controls, report
from mpx.runtime.errors import OptionsError
from mpx.runtime.midi import read_notes

ONNX = ARTIFACTS / "music_producter.onnx"


@pytest.fixture(scope="module")
def pieces() -> list[report.Piece]:
    cuts = [report.cut(path.name, read_notes(path)) for path in sorted(MIDI_DIR.glob("*.mid"))]
    return [p for p in cuts if p is not None]


def test_real_music_drifts_as_itself_and_the_quarters_are_sane(pieces: list[report.Piece]) -> None:
    assert pieces
    moved = report.drift_report([p.real for p in pieces], pieces)
    assert moved["generated"] == moved["real"] and moved["quarters"]["generated"] == moved["quarters"]["real"]
    assert moved["duration_vs_real"] == pytest.approx(1.0)
    assert not report.v3_misses(moved, report.interval_report([p.real for p in pieces], pieces))
    q = report.quarter_figures(pieces[0].real)
    assert all(len(v) == report.QUARTERS for v in q.values())
    assert all(0 < v < 4 for v in q["ioi"]) and all(20 < v < 110 for v in q["pitch"])
    assert all(0 < v < 8 for v in q["duration"]) and all(0 <= v <= 1 for v in q["chord_share"])
    # a run an octave higher in its last quarter: its mean pitch moves 12 semitones more than real's
    lifted = [p.real.copy() for p in pieces]
    for run in lifted:
        run[-len(run) // 4:, 0] += 12
    missed = report.v3_misses(report.drift_report(lifted, pieces), report.interval_report(lifted, pieces))
    assert "drift_pitch_change_abs" in missed and "drift_ioi_ratio" not in missed


def test_interval_overlap_of_a_piece_with_itself_is_one(pieces: list[report.Piece]) -> None:
    notes = pieces[0].real
    assert report.interval_overlap(notes, notes) == pytest.approx(1.0)
    histogram = report.interval_histogram(notes)
    assert len(histogram) == 2 * report.INTERVAL_RANGE + 1 and histogram.sum() == pytest.approx(1.0)
    leaps = np.array([[60, 0.1, 0.1, 64], [100, 0.1, 0.1, 64], [20, 0.1, 0.1, 64]], np.float32)
    assert report.interval_histogram(leaps)[[0, -1]].tolist() == [0.5, 0.5]  # clipped to -24..24
    assert report.interval_overlap(notes, leaps) < 0.2
    ceiling = report.interval_report([p.second for p in pieces], pieces)
    assert ceiling["generated"] == ceiling["real"] and 0.3 < ceiling["real"] < 1


def test_adherence_on_the_bundled_model_gives_per_control_figures(pieces: list[report.Piece],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from mpx.runtime.artifacts import load
    from mpx.train.evaluate import adherence_of
    monkeypatch.setattr(report, "ADHERENCE_NOTES", 48)
    ticks: list[tuple[int, int]] = []
    result = adherence_of(load(ONNX), [p.seed for p in pieces[:2]], on_progress=lambda *t: ticks.append(t))
    assert ticks == [(1, 2), (2, 2)] and result["seeds"] == 2 and result["notes"] == 48
    assert list(result["controls"]) == list(controls.CONTROLS)
    for name, figures in result["controls"].items():
        assert figures["n"] <= 2 * report.ADHERENCE_VALUES
        rho = figures["rank_correlation"]
        assert math.isnan(rho) or -1 <= rho <= 1
    assert result["controls"]["pitch_mean"]["n"] == 10 and result["controls"]["pitch_mean"]["rank_correlation"] > 0.5
    assert set(result["misses"]) <= {f"{n}_{k}" for n in controls.CONTROLS for k in ("rank", "error")}
    assert "control adherence: 5 values per control on 2 seeds" in report.format_adherence(result)[0]


def test_adherence_figures_and_requests() -> None:
    requests = report.adherence_requests()
    assert len(requests) == report.ADHERENCE_VALUES * controls.C
    assert requests[0] == ("density", controls.TYPICAL["density"][0])
    asked = np.array([1.0, 2, 3, 4, 5])
    perfect = report.adherence_figures(asked, asked * 1.1)
    assert perfect["rank_correlation"] == pytest.approx(1.0) and perfect["median_relative_error"] == pytest.approx(0.1)
    assert report.adherence_figures(asked, asked[::-1])["rank_correlation"] == pytest.approx(-1.0)


def test_eval_generation_reports_drift_intervals_and_adherence_on_onnx_without_torch(tmp_path: Path) -> None:
    env = {**torch_blocked(tmp_path), "MPX_CACHE_DIR": str(tmp_path / "cache")}
    common = ("eval", str(ONNX), str(MIDI_DIR), "--split", "all", "--mode", "stateful", "--generation", "--files", "2")
    text = run_cli(*common, "--adherence", env=env)
    assert text.returncode == 0, text.stderr
    for line in ("drift (medians)", "onset gap (s)", "mean pitch", "overlap interval", "control adherence",
                 "velocity_mean"):
        assert line in text.stdout
    as_json = run_cli(*common, "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    generation = json.loads(as_json.stdout)["generation"]
    assert set(generation["drift"]["generated"]) >= {"ioi_ratio", "pitch_change", "duration_ratio",
                                                     "chord_share_change"}
    assert 0 < generation["intervals"]["generated"] <= 1 and 0 < generation["intervals"]["real"] <= 1
    assert "adherence" not in generation  # opt-in


def test_adherence_is_refused_in_one_line_where_it_cannot_run(capsys: pytest.CaptureFixture[str]) -> None:
    from mpx.train.evaluate import check_adherence
    code, out, err = mpx(capsys, "eval", str(ONNX), str(MIDI_DIR), "--split", "all", "--adherence")
    assert code == 1 and not out
    assert err.strip() == "mpx: error: --adherence measures how generation follows its controls: add --generation"
    no_controls = types.SimpleNamespace(spec=types.SimpleNamespace(inputs=("notes", "h0", "c0")))
    with pytest.raises(OptionsError, match="takes no controls to follow"):
        check_adherence(no_controls, True, True)  # type: ignore[arg-type]
    check_adherence(None, False, False)


def test_the_generation_report_continues_48_pieces_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mpx.runtime.artifacts import load
    from mpx.train import evaluate
    from mpx.train.cache import NoteCache
    from mpx.train.corpus import load_corpus
    asked: list[int | None] = []
    monkeypatch.setattr(report, "spread", lambda items, count: asked.append(count) or list(items)[:1])
    corpus = load_corpus([MIDI_DIR], cache=NoteCache(tmp_path / "cache"), workers=1)
    evaluate.generation_split(load(ONNX), corpus, "all")
    evaluate.generation_split(load(ONNX), corpus, "all", files=3)
    assert asked == [48, 3] and evaluate.GENERATION_FILES == 48
