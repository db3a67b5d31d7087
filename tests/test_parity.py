"""Parity suite: eager PyTorch, TorchScript, ONNX (onnxruntime) and ONNX (onnx's reference
evaluator) agree on every output, for the bundled model and for a fresh model of another size
(hidden 64, 2 layers): B in {1, 3}, T in {1, 25}, and a 256-note stateful rollout fed with the
model's own greedy notes. The worst difference per pair is printed at the end of the run.
Step, duration and h within 1e-5 absolute; the unbounded logits and cell state within
1e-5 + 1e-6 of their magnitude (float32 rounding grows with it)."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from mpx.export.api import export_artifacts
from mpx.export.options import ExportOptions
from mpx.export.parity import measure
from mpx.runtime import load
from mpx.runtime.backends import OnnxBackend, TorchScriptBackend, open_backend
from mpx.runtime.config import ModelConfig
from mpx.runtime.contract import Outputs
from mpx.runtime.spec import ModelSpec
from mpx.train import checkpoint
from mpx.train.model import NoteLSTM

from conftest import ARTIFACTS, SEEDS_DIR, record_parity

ATOL = 1e-5
RTOL = 1e-5  # |a - b| <= ATOL + RTOL |a| (numpy's default rtol): the relative part matters for
             # the unbounded outputs, the cell state (a greedy rollout drives |c| to ~70; float32
             # spacing there: 7.6e-6; CI's CPU measured 8.4e-5 against 1e-6 x 74.6 + 1e-5 = 8.5e-5)
             # and the logits (|logit| up to ~30)
INT8_TOP1_FLOOR = 0.90  # int8 must pick fp32's top pitch at >= 90% of positions of a real rollout
INT8_MAX_STEP_DIFF = 0.2  # seconds, worst single step over the same positions (measured 0.07)
INT8_MEAN_REL_TIME_DIFF = 0.10  # mean |int8 - fp32| / max(fp32, 50 ms) of step and of duration
                                # (measured 3-5 %: the model predicts log-seconds, so int8's error
                                # is proportional: 0.22 s at most, on a held note of several seconds)


class ReferenceBackend:
    """onnx.reference.ReferenceEvaluator behind the backend interface: an ONNX consumer written
    independently of onnxruntime, in numpy."""

    name = "onnx-reference"

    def __init__(self, path: Path) -> None:
        from onnx.reference import ReferenceEvaluator
        self.path = path
        self.spec = OnnxBackend(path).spec
        self.evaluator = ReferenceEvaluator(str(path))

    def step(self, notes: np.ndarray, h: np.ndarray, c: np.ndarray):  # type: ignore[no-untyped-def]
        out = self.evaluator.run(None, {"notes": notes, "h0": h, "c0": c})
        return Outputs(*(np.asarray(o, np.float32) for o in out))


def _backends(checkpoint_path: Path, artifacts: Path) -> dict[str, object]:
    return {"eager": open_backend(checkpoint_path),
            "torchscript": TorchScriptBackend(artifacts / "music_producter.pt"),
            "onnxruntime": OnnxBackend(artifacts / "music_producter.onnx"),
            "onnx-reference": ReferenceBackend(artifacts / "music_producter.onnx")}


@pytest.fixture(scope="module")
def fresh_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly initialised model of another size and the other input/timing encodings
    (scalar pitch, linear timing; the bundled model has a pitch embedding and log timing)."""
    out = tmp_path_factory.mktemp("fresh")
    torch.manual_seed(1)
    model = NoteLSTM(ModelConfig(hidden=64, layers=2, pitch_input="scalar", timing="linear"))
    checkpoint.save(out / "model.safetensors", ModelSpec(config=model.config), model.state_dict())
    export_artifacts(out / "model.safetensors", out, echo=lambda _: None)
    return out


MODELS = {"bundled": lambda fresh: (ARTIFACTS / "model.safetensors", ARTIFACTS),
          "fresh h64x2": lambda fresh: (fresh / "model.safetensors", fresh)}


@pytest.fixture(scope="module")
def real_notes() -> np.ndarray:
    from mpx.runtime import read_notes
    return read_notes(SEEDS_DIR / "chopin_etude_op25_4.mid")


@pytest.mark.slow
@pytest.mark.parametrize("model", list(MODELS))
def test_every_pair_of_consumers_agrees(model: str, fresh_model: Path, real_notes: np.ndarray) -> None:
    backends = _backends(*MODELS[model](fresh_model))
    for (a_name, a), (b_name, b) in itertools.combinations(backends.items(), 2):
        report = measure(a, b, real_notes, rollout_steps=256, rtol=RTOL)  # type: ignore[arg-type]
        record_parity(model, f"{b_name} vs {a_name}", report.max_diff)
        assert report.passes(ATOL), f"{model}: {b_name} vs {a_name}: {report.describe()}"
        for name in ("step", "duration", "hn"):  # small and bounded: the absolute bound alone
            assert report.max_diff[name] <= ATOL, f"{model}: {b_name} vs {a_name}: {report.describe()}"


@pytest.mark.parametrize("model", list(MODELS))
def test_sampled_generation_is_identical_on_every_backend(model: str, fresh_model: Path, real_notes: np.ndarray) -> None:
    checkpoint_path, artifacts = MODELS[model](fresh_model)
    generators = {"eager": load(checkpoint_path),
                  "torchscript": load(artifacts / "music_producter.pt"),
                  "onnx": load(artifacts / "music_producter.onnx")}
    for seed, temperature, mode in itertools.product((0, 1, 2), (0.7, 1.2), ("stateful", "window")):
        outs = {n: g.generate(real_notes, 96, seed=seed, temperature=temperature, mode=mode)
                for n, g in generators.items()}
        for name in ("torchscript", "onnx"):
            label = f"{model} {name} seed={seed} T={temperature} {mode}"
            np.testing.assert_array_equal(outs[name][:, 0], outs["eager"][:, 0], err_msg=label)
            np.testing.assert_allclose(outs[name][:, 1:], outs["eager"][:, 1:], atol=ATOL, err_msg=label)


def test_int8_variant_keeps_the_top_pitch_above_its_floor(tmp_path: Path, real_notes: np.ndarray) -> None:
    from mpx.export.quantize import agreement
    int8 = ARTIFACTS / "music_producter.int8.onnx"
    if not int8.is_file():  # exported with the bundled model; rebuild it when absent
        export_artifacts(ARTIFACTS / "model.safetensors", tmp_path, ExportOptions(format="onnx", quantize="int8"), echo=lambda _: None)
        int8 = tmp_path / "music_producter.int8.onnx"
    measured = agreement(OnnxBackend(ARTIFACTS / "music_producter.onnx"), OnnxBackend(int8), real_notes)
    print(f"int8 top-1 pitch agreement {measured['top1_pitch_agreement']:.4f} over {measured['positions']} positions")
    assert measured["top1_pitch_agreement"] >= INT8_TOP1_FLOOR
    assert measured["max_step_diff"] < INT8_MAX_STEP_DIFF
    assert measured["mean_step_rel_diff"] < INT8_MEAN_REL_TIME_DIFF
    assert measured["mean_duration_rel_diff"] < INT8_MEAN_REL_TIME_DIFF
