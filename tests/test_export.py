"""Export: the graph contract of both artifacts, their spec, validation that refuses, bad input."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from mpx.export import api, onnx_graph, torchscript
from mpx.export.errors import ParityError
from mpx.runtime.backends import OnnxBackend, TorchScriptBackend, zero_state
from mpx.export.options import ExportOptions
from mpx.runtime.contract import INPUTS, OUTPUTS, SPEC_KEY
from mpx.runtime.spec import ModelSpec
from mpx.train import checkpoint
from mpx.train.model import NoteLSTM

from conftest import run_cli, torch_blocked

DIMS = {"notes": ("batch", "time", 4), "h0": ("L", "batch", "H"), "c0": ("L", "batch", "H"),
        "uniforms": ("batch", 8), "temperature": ("batch", 4), "top_p": ("batch", 4),
        "controls": ("batch", 18), "given": ("batch", 4),
        "next_note": ("batch", 4), "hn": ("L", "batch", "H"), "cn": ("L", "batch", "H"),
        "logits": ("batch", "time", 4, 128)}


def feed(spec: ModelSpec, notes: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    h, c = zero_state(spec, len(notes))
    b = len(notes)
    return {"notes": notes, "h0": h, "c0": c, "uniforms": rng.random((b, 8)).astype(np.float32),
            "temperature": np.ones((b, 4), np.float32), "top_p": np.full((b, 4), 0.9, np.float32),
            "controls": np.full((b, 18), -1.0, np.float32), "given": np.full((b, 4), -1.0, np.float32)}


def test_onnx_graph_names_dynamic_axes_and_metadata(tiny_artifacts: Path) -> None:
    model = onnx.load(str(tiny_artifacts / "music_producter.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == list(INPUTS)
    assert [o.name for o in model.graph.output] == list(OUTPUTS)
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        for dim, expected in zip(dims, DIMS[value.name]):
            if expected in ("batch", "time"):
                assert dim.dim_param == expected, (value.name, dim)
            else:
                assert dim.dim_value > 0 and not dim.dim_param, (value.name, dim)
    assert not {n.op_type for n in model.graph.node} & {"Loop", "If", "Scan"}
    assert "LSTM" in {n.op_type for n in model.graph.node}
    meta = {p.key: p.value for p in model.metadata_props}
    spec = ModelSpec.from_json(meta[SPEC_KEY])
    assert spec.artifact["format"] == "onnx" and spec.artifact["opset"] == 17
    assert "onnx" in spec.versions and "torch" in spec.versions
    assert model.opset_import[0].version == 17


def test_onnxruntime_runs_every_batch_and_length_without_shape_warnings(tiny_artifacts: Path, capfd: pytest.CaptureFixture[str]) -> None:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 1  # show warnings and info: a shape mismatch would be logged
    session = ort.InferenceSession(str(tiny_artifacts / "music_producter.onnx"), options)
    spec = ModelSpec.from_json(session.get_modelmeta().custom_metadata_map[SPEC_KEY])
    rng = np.random.default_rng(0)
    for batch in (1, 4, 64):
        for time in (1, 25, 300):
            notes = np.stack([rng.integers(0, 128, (batch, time)), rng.random((batch, time)),
                              rng.random((batch, time)), rng.integers(1, 128, (batch, time))], -1).astype(np.float32)
            out = session.run(None, feed(spec, notes, rng))
            assert out[0].shape == (batch, 4) and out[3].shape == (batch, time, 4, 128)
            assert out[1].shape == (spec.layers, batch, spec.hidden)
    logged = capfd.readouterr().err
    assert "VerifyOutputSizes" not in logged and "does not match" not in logged


def test_torchscript_loads_without_mpx_and_offers_zero_state(tiny_artifacts: Path) -> None:
    script = f"""
import sys, json, torch
extra = {{"mpx_spec.json": ""}}
m = torch.jit.load({str(tiny_artifacts / 'music_producter.pt')!r}, _extra_files=extra)
h, c = m.zero_state(3)
out = m(torch.zeros(3, 5, 4), h, c, torch.rand(3, 8), torch.ones(3, 4), torch.ones(3, 4), -torch.ones(3, 18),
        -torch.ones(3, 4))
assert isinstance(out, tuple) and len(out) == 4
print(json.dumps({{"mpx": any(k.split(".")[0] == "mpx" for k in sys.modules),
                  "hidden": json.loads(extra["mpx_spec.json"])["config"]["hidden"],
                  "shapes": [list(t.shape) for t in out]}}))
"""
    result = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True,
                            cwd="/", timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["mpx"] is False and report["hidden"] == 32
    assert report["shapes"] == [[3, 4], [1, 3, 32], [1, 3, 32], [3, 5, 4, 128]]


def test_torchscript_is_scripted_not_traced(tiny_artifacts: Path) -> None:
    backend = TorchScriptBackend(tiny_artifacts / "music_producter.pt")
    assert "zero_state" in backend.module._c._method_names()
    rng = np.random.default_rng(0)
    for batch, time in ((1, 1), (5, 17)):  # a traced graph would have frozen one shape
        out = backend.run(**feed(backend.spec, np.zeros((batch, time, 4), np.float32), rng))
        assert out.logits.shape == (batch, time, 4, 128) and out.next_note.shape == (batch, 4)


def test_int8_variant_records_its_agreement(tiny_artifacts: Path) -> None:
    backend = OnnxBackend(tiny_artifacts / "music_producter.int8.onnx")
    measured = backend.spec.artifact["agreement_with_fp32"]
    assert 0.0 <= measured["top1_pitch_agreement"] <= 1.0 and measured["positions"] > 256
    assert 0.0 <= measured["sampled_note_agreement"] <= 1.0 and measured["notes"] == 257
    ops = {n.op_type for n in onnx.load(str(tiny_artifacts / "music_producter.int8.onnx")).graph.node}
    assert "DynamicQuantizeLSTM" in ops or "MatMulInteger" in ops


def test_a_perturbed_onnx_graph_is_refused_and_not_kept(tiny_checkpoint: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real_build = onnx_graph.build

    def perturbed(model: NoteLSTM, spec: ModelSpec, opset: int) -> onnx.ModelProto:
        proto = real_build(model, spec, opset)
        for init in proto.graph.initializer:
            if list(init.dims) == [32, 512]:  # the heads' input layer: [H, 4 x head_hidden]
                array = onnx.numpy_helper.to_array(init).copy()
                array[:, 0] += 1e-3  # the first head's first unit
                init.CopyFrom(onnx.numpy_helper.from_array(array, init.name))
                break
        else:
            raise AssertionError("the heads' weights were not found in the graph")
        return proto

    monkeypatch.setattr(onnx_graph, "build", perturbed)
    with pytest.raises(ParityError, match="not kept"):
        api.export_artifacts(tiny_checkpoint, tmp_path, ExportOptions(format="onnx"), echo=lambda _: None)
    assert list(tmp_path.iterdir()) == []


def test_a_perturbed_torchscript_module_is_refused_and_not_kept(tiny_checkpoint: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    real_save = torchscript.save

    def perturbed(model: NoteLSTM, spec: ModelSpec, path: Path) -> None:
        clone, _ = checkpoint.load_model(tiny_checkpoint)
        with torch.no_grad():
            clone.out_bias[clone.chain.index(1) * 128] += 1e-3  # the first step bin's logit, 10x the bound
        real_save(clone, spec, path)

    monkeypatch.setattr(torchscript, "save", perturbed)
    with pytest.raises(ParityError, match="logits"):
        api.export_artifacts(tiny_checkpoint, tmp_path, ExportOptions(format="torchscript"), echo=lambda _: None)
    assert list(tmp_path.iterdir()) == []


def test_cli_export_prints_parity_and_refuses_a_tolerance_it_cannot_meet(tiny_checkpoint: Path, tmp_path: Path) -> None:
    ok = run_cli("export", "--checkpoint", str(tiny_checkpoint), "--format", "onnx+torchscript", "--out-dir", str(tmp_path / "ok"))
    assert ok.returncode == 0, ok.stderr
    assert "parity onnx vs eager" in ok.stdout and "parity torchscript vs eager" in ok.stdout
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == ["music_producter.onnx", "music_producter.pt"]
    strict = run_cli("export", "--checkpoint", str(tiny_checkpoint), "--format", "onnx",
                     "--out-dir", str(tmp_path / "strict"), "--atol", "1e-12")
    assert strict.returncode == 1 and "not kept" in strict.stderr
    assert not (tmp_path / "strict").exists()  # nothing kept, not even the folder it made


def _bad_checkpoints(tmp_path: Path, good: Path) -> dict[str, Path]:
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file
    save_file({"weight": torch.zeros(3)}, str(foreign))
    loaded = checkpoint.load(good)
    other_shape = checkpoint.save(tmp_path / "other.safetensors",
                                  loaded.spec.replace(config=dataclasses.replace(loaded.spec.config, hidden=48)),
                                  loaded.state_dict)
    text = tmp_path / "notes.safetensors"
    text.write_text("not a checkpoint")
    return {"no such checkpoint": tmp_path / "missing.safetensors", "not a readable": truncated,
            "no mpx spec": foreign, "has shape": other_shape, "not a readable ": text}


@pytest.mark.slow
def test_cli_export_bad_checkpoints_are_one_line_and_leave_nothing(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for message, path in _bad_checkpoints(tmp_path, tiny_checkpoint).items():
        result = run_cli("export", "--checkpoint", str(path), "--out-dir", str(out))
        assert result.returncode == 1, (message, result.stdout)
        assert message.strip() in result.stderr and str(path) in result.stderr
        assert result.stderr.strip().count("\n") == 0
        assert list(out.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("args, message, code", [
    (["--format", "tflite"], "--format must be one of onnx, torchscript, pt2, aoti, onnx+torchscript, all, got 'tflite'", 1),
    (["--opset", "99"], "--opset must be an integer 13..23", 1),
    (["--atol", "0"], "--atol must be a number > 0", 1),
    (["--rtol", "-1"], "--rtol must be a number >= 0", 1),
    (["--quantize", "int4"], "--quantize must be one of int8, got 'int4'", 1),
])
def test_cli_export_bad_options(tiny_checkpoint: Path, tmp_path: Path, args: list[str], message: str, code: int) -> None:
    result = run_cli("export", "--checkpoint", str(tiny_checkpoint), "--out-dir", str(tmp_path), *args)
    assert result.returncode == code and message in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert list(tmp_path.iterdir()) == []


def test_cli_export_unwritable_out_dir(tiny_checkpoint: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli("export", "--checkpoint", str(tiny_checkpoint), "--out-dir", str(blocker / "sub"))
    assert result.returncode == 1 and "cannot create output directory" in result.stderr


@pytest.mark.slow
def test_other_opsets_export_and_agree(tiny_checkpoint: Path, tmp_path: Path) -> None:
    for opset in (13, 20):
        report = api.export_artifacts(tiny_checkpoint, tmp_path / str(opset), ExportOptions(format="onnx", opset=opset), echo=lambda _: None)
        assert report.parity["onnx"].passes(1e-5)
        assert onnx.load(str(tmp_path / str(opset) / "music_producter.onnx")).opset_import[0].version == opset


def test_info_describes_every_kind_of_model_file(tiny_artifacts: Path, tiny_checkpoint: Path) -> None:
    for path, kind in ((tiny_artifacts / "music_producter.onnx", "onnx"),
                       (tiny_artifacts / "music_producter.pt", "torchscript"), (tiny_checkpoint, "checkpoint")):
        result = run_cli("info", str(path), "--json")
        assert result.returncode == 0, result.stderr
        info = json.loads(result.stdout)
        assert info["kind"] == kind and len(info["sha256"]) == 64 and info["bytes"] == path.stat().st_size
        assert [i["name"] for i in info["inputs"]] == list(INPUTS)
        assert [o["name"] for o in info["outputs"]] == list(OUTPUTS)
        assert info["spec"]["config"]["hidden"] == 32
    text = run_cli("info", str(tiny_artifacts / "music_producter.onnx"))
    assert "sha256" in text.stdout and "next_note" in text.stdout and "contract v3" in text.stdout


def test_info_on_onnx_needs_no_torch(tiny_artifacts: Path, tmp_path: Path) -> None:
    env = torch_blocked(tmp_path)
    result = run_cli("info", str(tiny_artifacts / "music_producter.onnx"), env=env)
    assert result.returncode == 0, result.stderr
    archive = run_cli("info", str(tiny_artifacts / "music_producter.pt"), env=env)  # read as a zip, never loaded
    assert archive.returncode == 0 and "methods  forward, zero_state" in archive.stdout, archive.stderr


def test_export_reports_progress_of_each_parity_check(tiny_checkpoint: Path, tmp_path: Path) -> None:
    ticks: list[tuple[str, int, int]] = []
    api.export_artifacts(tiny_checkpoint, tmp_path, ExportOptions(format="onnx+torchscript"), echo=lambda _: None,
                         progress=lambda step, done, total: ticks.append((step, done, total)))
    for fmt in ("torchscript", "onnx"):
        mine = [(done, total) for step, done, total in ticks if step == f"parity {fmt}"]
        assert mine, ticks
        totals = {total for _, total in mine}
        assert len(totals) == 1 and [done for done, _ in mine] == list(range(1, totals.pop() + 1))
