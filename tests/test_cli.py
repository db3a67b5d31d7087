"""The command line as a user meets it: help everywhere, eval, notes conversion, plots."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mpx.runtime import read_csv, read_notes

from conftest import MIDI_DIR, run_cli

COMMANDS = ["train", "export", "run", "info", "eval", "notes", "plot"]


def test_top_level_help_lists_every_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout and "--" in result.stdout


def test_unknown_command_and_flag_are_one_line_usage_errors() -> None:
    for args in (["compose"], ["run", "--nope", "x.mid"]):
        result = run_cli(*args)
        assert result.returncode == 1 and result.stderr.strip().count("\n") == 0  # one exit code for every error
        assert "--help" in result.stderr


def test_eval_scores_checkpoint_and_artifacts_alike(tiny_checkpoint: Path, tiny_artifacts: Path) -> None:
    reports = {}
    for model in (tiny_checkpoint, tiny_artifacts / "music_producter.onnx", tiny_artifacts / "music_producter.pt"):
        result = run_cli("eval", str(model), str(MIDI_DIR), "--split", "all", "--stride", "1", "--json")
        assert result.returncode == 0, result.stderr
        reports[model.suffix] = json.loads(result.stdout)
    base = reports[".safetensors"]
    assert base["files"] == len(list(MIDI_DIR.glob("*.mid")))
    keys = [f"{a}_{m}" for a in ("pitch", "step", "duration", "velocity") for m in ("ce", "top1")]
    for mode in ("window", "stateful"):
        r = base[mode]
        assert r["predictions"] > 1000 and 0 < r["pitch_ce"] < 6 and 0 <= r["pitch_top1"] <= 1
        assert all(0 < r[f"{a}_ce"] < math.log(128) for a in ("step", "duration", "velocity"))
        for other in (".onnx", ".pt"):
            for key in keys:
                assert reports[other][mode][key] == pytest.approx(r[key], abs=1e-4)
    # window mode predicts every note after the first seq_len of each file; stateful every note but the first
    notes = [read_notes(f) for f in sorted(MIDI_DIR.glob("*.mid"))]
    assert base["window"]["predictions"] == sum(len(n) - 25 for n in notes)
    assert base["stateful"]["predictions"] == sum(len(n) - 1 for n in notes)
    table = run_cli("eval", str(tiny_checkpoint), str(MIDI_DIR), "--split", "all", "--mode", "stateful",
                    "--generation", "--files", "2")
    assert table.returncode == 0, table.stderr
    assert "pitch CE" in table.stdout and "velocity CE" in table.stdout and "window " not in table.stdout
    assert "generation: 2 pieces" in table.stdout and "overlap velocity" in table.stdout


def test_eval_bad_input(tiny_checkpoint: Path, tmp_path: Path) -> None:
    for args, message in ((["--split", "dev"], "--split must be one of train, val, test, all, got 'dev'"),
                          (["--mode", "both-ways"], "--mode must be one of window, stateful, both, got 'both-ways'")):
        result = run_cli("eval", str(tiny_checkpoint), str(MIDI_DIR), *args)
        assert result.returncode == 1 and message in result.stderr, result.stderr
    missing = run_cli("eval", str(tmp_path / "none.safetensors"), str(MIDI_DIR))
    assert missing.returncode == 1 and "no such model file" in missing.stderr


def test_notes_converts_between_midi_and_csv(seed_midi: Path, tmp_path: Path) -> None:
    result = run_cli("notes", str(seed_midi), "--out", str(tmp_path / "primer.csv"), "--last", "25")
    assert result.returncode == 0, result.stderr
    primer = read_csv(tmp_path / "primer.csv")
    np.testing.assert_array_equal(primer, read_notes(seed_midi)[-25:])
    assert (tmp_path / "primer.csv").read_text().startswith("pitch,step,duration,velocity\n")
    back = run_cli("notes", str(tmp_path / "primer.csv"), "--out", str(tmp_path / "primer.mid"))
    assert back.returncode == 0 and len(read_notes(tmp_path / "primer.mid")) == 25
    too_many = run_cli("notes", str(seed_midi), "--out", str(tmp_path / "x.csv"), "--last", "100000")
    assert too_many.returncode == 1 and f"--last 100000: {seed_midi} has only 1358 notes" in too_many.stderr
    assert not (tmp_path / "x.csv").exists()


def test_plot_draws_a_png(seed_midi: Path, tmp_path: Path) -> None:
    result = run_cli("plot", str(seed_midi), "--out", str(tmp_path / "roll.png"), "--primer-notes", "25")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "roll.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
