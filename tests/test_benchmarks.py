"""Every script under benchmarks/ runs: each is started as a user starts it, with the smallest
settings, and must finish, print its table and write its JSON. (The figures themselves are
measured on a quiet machine and quoted in the README; here they only have to exist.)
bench_generate and reference_recipes run on a tiny contract-v2 model made here, so they do not
depend on the bundled model's size or version."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MIDI_DIR, ROOT, SEEDS_DIR, TINY_MODEL

pytestmark = pytest.mark.slow


BENCHMARKS = ROOT / "benchmarks"


def run_script(name: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, str(BENCHMARKS / name), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly initialised tiny model, exported as `mpx export` writes a model folder."""
    import torch

    from mpx.export.api import export_artifacts
    from mpx.runtime.spec import ModelSpec, Sampling
    from mpx.train import checkpoint
    from mpx.train.model import NoteLSTM

    out = tmp_path_factory.mktemp("bench-model")
    torch.manual_seed(0)
    spec = ModelSpec(config=TINY_MODEL, seq_len=25, sampling=Sampling((1.0, 0.9, 0.9, 1.0), (0.95, 0.9, 0.9, 1.0)))
    checkpoint.save(out / "model.safetensors", spec, NoteLSTM(TINY_MODEL).state_dict())
    export_artifacts(out / "model.safetensors", out, echo=lambda _: None)
    return out


def test_bench_generate_runs(tmp_path: Path, model_dir: Path) -> None:
    out = tmp_path / "generate.json"
    done = run_script("bench_generate.py", "--model-dir", str(model_dir), "--notes", "32",
                      "--batched-notes", "8", "--repeats", "1", "--warmup", "4", "--runs", "1",
                      "--torch-threads", "1", "--ort-threads", "1", "--ort-sweep", "--json", str(out))
    for table in ("(a) one stream", "(b) 64 streams", "(c) cold start", "(d) onnxruntime", "(e) one onnx"):
        assert table in done.stdout, done.stdout
    results = json.loads(out.read_text())
    assert {(r["runner"], r["mode"]) for r in results["single"]} == {
        ("tutorial loop", "window"), *((f"mpx {b}", m) for b in ("eager", "torchscript", "onnx")
                                       for m in ("stateful", "window"))}
    assert all(r["notes_per_s"] > 0 for r in results["single"] + results["batched"])
    assert all(r["one_stream_notes_per_s"] > 0 and r["batched_notes_per_s"] > 0 for r in results["ort_sweep"])
    mpx_run = results["cold_start"][-1]
    assert mpx_run["wall_s"] > 0 and mpx_run["rss_mb"] > 0 and mpx_run["imports_torch"] is False
    assert results["per_note_us"]["graph_call_us"] > 0 and results["per_note_us"]["generate_per_note_us"] > 0


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


def test_reference_recipes_runs(tmp_path: Path, model_dir: Path) -> None:
    # the test files have no test-split piece: score the validation split
    common = ["--data", str(MIDI_DIR), str(SEEDS_DIR), "--split", "val", "--out-dir", str(tmp_path),
              "--model", str(model_dir / "model.safetensors"), "--model", str(model_dir / "music_producter.onnx")]
    done = run_script("reference_recipes.py", *common, "--minutes", "0.02", "--log-every", "0.5")
    assert "pitch CE stateful" in done.stdout and "velocity CE" in done.stdout
    rows = json.loads((tmp_path / "reference_recipes.json").read_text())["rows"]
    assert [r["kind"] for r in rows] == ["recipe", "recipe", "recipe", "unigram", "mpx", "mpx"]
    for row in rows:
        table = row["table"]
        assert 0 < table["pitch_ce_window"] < 10 and 0 < table["pitch_ce_stateful"] < 10, row["label"]
        assert 0 <= table["pitch_top1"] <= 1
        has_all = row["kind"] != "recipe"  # the recipes' timing is a point regression
        assert all((table[k] is not None and table[k] > 0) == has_all
                   for k in ("step_ce", "duration_ce", "velocity_ce")), row["label"]
    # the recipes' weights are plain safetensors, scored again without training
    for name in ("notebook_recipe", "tf_recipe", "tf_recipe_best"):
        assert (tmp_path / f"{name}.safetensors").is_file()
    again = run_script("reference_recipes.py", *common, "--reuse")
    assert "reusing" in again.stdout
    reused = json.loads((tmp_path / "reference_recipes.json").read_text())["rows"]
    assert [r["table"] for r in reused] == [r["table"] for r in rows]


def test_recipe_scorer_matches_mpx_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipes' own pitch scorer and `mpx eval` (evaluate_model) agree on the same model:
    the recipe wrapped as a v2 backend whose other attributes are uniform."""
    import numpy as np
    import torch

    from mpx.runtime.contract import Outputs
    from mpx.runtime.midi import read_notes
    from mpx.runtime.spec import ModelSpec
    from mpx.runtime.config import ModelConfig
    from mpx.train.evaluate import evaluate_model

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import reference_recipes as rr

    torch.manual_seed(0)
    model = rr.RecipeModel(hidden=16).eval()

    class Wrapped:
        name, path = "recipe", Path("<recipe>")
        spec = ModelSpec(config=ModelConfig(hidden=16, embedding=1), seq_len=rr.SEQ_LEN)

        def call(self, notes, h0, c0, uniforms, temperature, top_p, controls, given):  # type: ignore[no-untyped-def]
            state = (torch.from_numpy(h0), torch.from_numpy(c0))
            pitch, (h, c) = rr.recipe_logits(model, notes, state, sigmoid=False)
            logits = np.zeros((*pitch.shape[:2], 4, 128), np.float32)
            logits[:, :, 0] = pitch
            return Outputs(np.zeros((len(notes), 4), np.float32), h.numpy(), c.numpy(), logits)

    notes = [read_notes(path)[:700] for path in sorted(SEEDS_DIR.glob("*.mid"))[:3]]
    ours = {"window": rr.recipe_window(model, notes, sigmoid=False),
            "stateful": rr.recipe_stateful(model, notes, sigmoid=False)}
    mpx = evaluate_model(Wrapped(), notes)
    for mode in ("window", "stateful"):
        assert ours[mode]["predictions"] == mpx[mode]["predictions"]
        assert ours[mode]["pitch_top1"] == mpx[mode]["pitch_top1"]
        assert abs(ours[mode]["pitch_ce"] - mpx[mode]["pitch_ce"]) < 1e-5


def test_sampling_sweep_runs(model_dir: Path, tmp_path: Path) -> None:
    out, checkpoint_copy = tmp_path / "sweep.json", tmp_path / "model.safetensors"
    checkpoint_copy.write_bytes((model_dir / "model.safetensors").read_bytes())
    done = run_script("sampling_sweep.py", "--model", str(checkpoint_copy), "--data", str(SEEDS_DIR),
                      "--split", "all", "--quick", "--files", "2", "--json", str(out), "--write")
    result = json.loads(out.read_text())
    assert len(result["rows"]) == 3 * 4 and result["pieces"] == 2 and "chosen" in done.stdout
    from mpx.runtime import load
    assert load(checkpoint_copy).spec.sampling.to_dict() == result["chosen"]  # --write: now its defaults


def test_bench_consumers_runs(model_dir: Path, cpp_programs: dict[str, Path], tmp_path: Path) -> None:
    """Every consumer but the AOTInductor one (its compile is timed in test_pt2) on the tiny
    model: each must measure, none may fall back to "skipped"."""
    out = tmp_path / "consumers.json"
    done = run_script("bench_consumers.py", "--model-dir", str(model_dir), "--notes", "16", "--repeats", "1",
                      "--build-dir", str(cpp_programs["torchscript"].parent), "--skip", "aoti",
                      "--json", str(out), timeout=900)
    rows = json.loads(out.read_text())["rows"]
    assert [r["consumer"] for r in rows] == ["Python onnxruntime", "Python onnxruntime", "Python TorchScript",
                                             "C++ TorchScript", "Node onnxruntime-node", "browser (Chromium)"]
    skipped = [r for r in rows if "skipped" in r]
    assert not skipped, skipped
    assert all(r["notes_per_s"] > 0 for r in rows), done.stdout


@pytest.mark.slow
def test_reliability_audit_smoke(tmp_path: Path) -> None:
    out = tmp_path / "reliability.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reliability.py"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert "| **all** |" in done.stdout and len(report["cases"]) > 100
    assert {case[2] for case in report["cases"]} <= {"ok", "clean error"} and report["findings"] == []
