"""Every script under benchmarks/ runs: each is started as a user starts it, with the smallest
settings, and must finish, print its table and write its JSON. (The figures themselves are
measured on a quiet machine and quoted in the README; here they only have to exist.)"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MIDI_DIR, ROOT, SEEDS_DIR

pytestmark = pytest.mark.slow

BENCHMARKS = ROOT / "benchmarks"


def run_script(name: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, str(BENCHMARKS / name), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_bench_generate_runs(tmp_path: Path) -> None:
    out = tmp_path / "generate.json"
    done = run_script("bench_generate.py", "--notes", "32", "--batched-notes", "8", "--repeats", "1",
                      "--warmup", "4", "--runs", "1", "--torch-threads", "1", "--json", str(out))
    assert "(a) one stream" in done.stdout and "(c) cold start" in done.stdout
    results = json.loads(out.read_text())
    assert {r["runner"] for r in results["single"]} >= {"tutorial loop", "mpx onnx"}
    assert all(r["notes_per_s"] > 0 for r in results["single"] + results["batched"])


def test_bench_train_runs(tmp_path: Path) -> None:
    out = tmp_path / "train.json"
    done = run_script("bench_train.py", "--data", str(MIDI_DIR), "--load-data", str(MIDI_DIR),
                      "--seconds", "2", "--slices", "1", "--hidden", "32", "--torch-threads", "1",
                      "--rank-seconds", "1", "--json", str(out))
    assert "(a)" in done.stdout and "(b) corpus load" in done.stdout and "(c) ranks" in done.stdout
    results = json.loads(out.read_text())
    assert results["train"] and results["load"][0]["files"] == len(list(MIDI_DIR.glob("*.mid")))
    assert [row["ranks"] for row in results["ranks"]] == [1, 2]
    assert all(row["per_s"] > 0 for row in results["ranks"])


def test_reference_recipes_runs(tmp_path: Path) -> None:
    done = run_script("reference_recipes.py", "--data", str(MIDI_DIR), str(SEEDS_DIR),
                      "--minutes", "0.02", "--log-every", "0.5", "--out-dir", str(tmp_path),
                      "--model", str(ROOT / "artifacts" / "music_producter.onnx"))
    rows = json.loads((tmp_path / "reference_recipes.json").read_text())["rows"]
    assert {r["name"] for r in rows} >= {"notebook", "tf", "unigram"}
    assert all(0 < r["eval"]["stateful"]["pitch_ce"] < 10 for r in rows), done.stdout


def test_sampling_sweep_runs(tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    run_script("sampling_sweep.py", "--temperatures", "1.0", "--top-ps", "0.95", "--timings", "sample",
               "--trials", "1", "--notes", "32", "--json", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert rows and rows[0]["runs"] == len(list(SEEDS_DIR.glob("*.mid")))
