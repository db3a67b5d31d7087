"""Export under faults: it never replaces artifacts unasked, refuses a damaged checkpoint spec,
leaves the previous set whole when stopped, serialises in memory, and ends a full disk in one
line with nothing left behind."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from mpx.runtime.contract import SPEC_KEY

from clitools import json_edit, mpx, one_line_error
from conftest import run_cli

pytest.importorskip("torch", reason="export needs torch")


@pytest.fixture(scope="module")
def onnx_model(tiny_artifacts: Path) -> Path:
    return tiny_artifacts / "music_producter.onnx"


@pytest.mark.slow
def test_export_writes_into_the_current_folder_and_refuses_to_replace(tiny_checkpoint: Path, tmp_path: Path) -> None:
    first = run_cli("export", "--checkpoint", str(tiny_checkpoint), "--format", "onnx", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["music_producter.onnx"]
    before = (tmp_path / "music_producter.onnx").read_bytes()
    again = run_cli("export", "--checkpoint", str(tiny_checkpoint), "--format", "onnx", cwd=tmp_path)
    assert again.returncode == 1 and "exists; pass --force" in again.stderr
    assert (tmp_path / "music_producter.onnx").read_bytes() == before


def _checkpoint_with_spec(source: Path, target: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    from safetensors import safe_open
    from safetensors.torch import save_file
    with safe_open(str(source), framework="pt") as fh:
        meta = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    meta[SPEC_KEY] = edit(meta[SPEC_KEY])
    save_file(tensors, str(target), metadata=meta)
    return target


def test_a_damaged_checkpoint_spec_is_refused_by_info_run_and_export(tiny_checkpoint: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    for message, edit in (("its weights 1 of 32", json_edit(lambda s: s["config"].update(hidden=128))),
                          ("unknown keys", json_edit(lambda s: s["config"].update(heads=4))),
                          ("not valid JSON", lambda text: text[:-5])):
        damaged = _checkpoint_with_spec(tiny_checkpoint, tmp_path / "damaged.safetensors", edit)
        code, _, err = mpx(capsys, "info", str(damaged))
        one_line_error(code, err, str(damaged), message)
        code, _, err = mpx(capsys, "export", "--checkpoint", str(damaged), "--out-dir", str(out))
        one_line_error(code, err, str(damaged))
        assert not out.exists() or list(out.iterdir()) == []


def test_an_export_stopped_midway_leaves_the_previous_set_whole(tiny_checkpoint: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from mpx.export import api, parity
    from mpx.export.options import ExportOptions
    api.export_artifacts(tiny_checkpoint, tmp_path, ExportOptions(), echo=lambda _: None)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_check = parity.check

    def stop_at_onnx(eager, candidate, *args, **kwargs):  # type: ignore[no-untyped-def]
        if candidate.name == "onnx":
            raise KeyboardInterrupt  # Ctrl-C after the new .pt was written and checked
        return real_check(eager, candidate, *args, **kwargs)

    monkeypatch.setattr(parity, "check", stop_at_onnx)
    with pytest.raises(KeyboardInterrupt):
        api.export_artifacts(tiny_checkpoint, tmp_path, ExportOptions(force=True), echo=lambda _: None)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_export_serialises_torchscript_in_memory(tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # torch.jit.save to a path aborted the process on a full disk (c10::Error, exit 134)
    import torch
    from mpx.export import api
    from mpx.export.options import ExportOptions
    real_save = torch.jit.save

    def memory_only(module, f, **kwargs):  # type: ignore[no-untyped-def]
        assert not isinstance(f, (str, os.PathLike)), "torch.jit.save must not write a file itself"
        return real_save(module, f, **kwargs)

    monkeypatch.setattr(torch.jit, "save", memory_only)
    api.export_artifacts(tiny_checkpoint, tmp_path, ExportOptions(format="torchscript"), echo=lambda _: None)
    assert [p.name for p in tmp_path.iterdir()] == ["music_producter.pt"]


def test_a_real_full_disk_on_every_writer(full_disk: Path, seed: Path, onnx_model: Path, tiny_checkpoint: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    cases = [["run", str(seed), "--model", str(onnx_model), "--notes", "20000", "--out", str(full_disk / "x.mid")],
             ["notes", str(seed), "--out", str(full_disk / "x.csv")],
             ["export", "--checkpoint", str(tiny_checkpoint), "--out-dir", str(full_disk)]]
    for args in cases:
        code, _, err = mpx(capsys, *args)
        one_line_error(code, err, "no space left on the device")
        assert list(full_disk.iterdir()) == []
