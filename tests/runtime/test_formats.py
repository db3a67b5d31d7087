"""The format registry (runtime/formats.py), torch-free: every format is named, found by its
suffix, described by `mpx info` without running its file, and a format without a bundled model
says so in one line. (tests/test_every_format.py takes every format through every command.)"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from mpx.runtime import contract, formats
from mpx.runtime.errors import ArtifactError, OptionsError
from mpx.runtime.info import describe, format_description

import fake_archives
from clitools import mpx, one_line_error
from conftest import ARTIFACTS

BUNDLED = {"onnx": ARTIFACTS / "music_producter.onnx", "torchscript": ARTIFACTS / "music_producter.pt",
           "eager": ARTIFACTS / "model.safetensors"}


def test_every_format_has_one_entry_with_everything_said() -> None:
    assert formats.NAMES == ("onnx", "torchscript", "eager", "pt2", "aoti")
    assert formats.EXPORTED == ("onnx", "torchscript", "pt2", "aoti") and formats.SHIPPED == ("onnx", "torchscript")
    assert {f.name for f in formats.programs()} == {"torchscript", "aoti"}
    assert [f.name for f in formats.FORMATS.values() if not f.needs_torch] == ["onnx"]
    for fmt in formats.FORMATS.values():
        assert formats.of(f"x/{fmt.filename}") is fmt and fmt.spec_in and fmt.title
        assert all(formats.of(f"model{s.upper()}") is fmt for s in fmt.suffixes)  # case does not matter


def test_the_longest_suffix_decides_and_unknown_ones_are_named() -> None:
    assert formats.of("a.aoti.pt2").name == "aoti" and formats.of("a.pt2").name == "pt2"
    assert formats.of("a.pt").name == "torchscript"
    with pytest.raises(ArtifactError, match="x.tflite: unknown model file type '.tflite'; expected one of .onnx, .pt"):
        formats.of("x.tflite")
    with pytest.raises(OptionsError, match="backend must be one of onnx, torchscript, eager, pt2, aoti, got 'tf'"):
        formats.get("tf")


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_info_reads_every_bundled_file_as_data(name: str) -> None:
    info = describe(BUNDLED[name])
    fmt = formats.get(name)
    assert info["format"] == name and info["kind"] == fmt.kind and info["program"] == fmt.program
    assert [i["name"] for i in info["inputs"]] == list(contract.INPUTS)
    assert info["spec"]["config"]["hidden"] == 256 and info["spec_in"] == fmt.spec_in
    text = format_description(info)
    assert ("is a program" in text) == fmt.program


def _spec_json() -> str:
    return json.dumps(describe(BUNDLED["onnx"])["spec"])


def _pt2_archive(path: Path, spec: str | None) -> Path:
    return fake_archives.pt2_archive(path, spec)


def _aoti_package(path: Path, spec: str) -> Path:
    return fake_archives.aoti_package(path, spec)


def test_info_reads_compiled_archives_without_loading_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pt2 = _pt2_archive(tmp_path / "m.pt2", _spec_json())
    aoti = _aoti_package(tmp_path / "m.aoti.pt2", _spec_json())
    code, out, err = mpx(capsys, "info", str(pt2))
    assert code == 0, err
    assert "(pt2," in out and "time     dynamic" in out and "is a program" not in out
    code, out, err = mpx(capsys, "info", str(aoti), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["kind"] == "aoti" and info["program"] and info["time_axis"] == "1"
    assert info["compiled_for"]["AOTI_CPU_ISA"] == "AVX2"
    assert "is a program" in format_description(info)


def test_info_on_a_damaged_or_foreign_compiled_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "text.pt2").write_text("not an archive")
    _pt2_archive(tmp_path / "nospec.pt2", None)
    wrong = json.loads(_spec_json())
    wrong["config"]["hidden"] = 128
    _pt2_archive(tmp_path / "wrong.pt2", json.dumps(wrong))
    with zipfile.ZipFile(tmp_path / "other.aoti.pt2", "w") as archive:
        archive.writestr("x/data.bin", b"")
    for name, message in (("text.pt2", "not a readable torch.export archive"), ("nospec.pt2", "carries no mpx spec"),
                          ("wrong.pt2", "its weights 1 of 256"),
                          ("other.aoti.pt2", "not an AOTInductor package")):
        code, _, err = mpx(capsys, "info", str(tmp_path / name))
        one_line_error(code, err, str(tmp_path / name), message)


@pytest.mark.parametrize("backend", ["pt2", "aoti"])
def test_a_format_without_a_bundled_model_asks_for_one(backend: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = mpx(capsys, "run", str(ARTIFACTS / "seed.mid"), "--backend", backend, "--out", str(tmp_path / "x.mid"))
    one_line_error(code, err, f"mpx bundles no {backend} model: pass --model FILE",
                   f"mpx export --format {backend}")
    assert list(tmp_path.iterdir()) == []


def test_opening_checks_the_file_and_the_threads(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="absent.onnx: no such model file"):
        formats.open_backend(tmp_path / "absent.onnx")
    with pytest.raises(OptionsError, match="threads must be an integer 1..256, got 0"):
        formats.open_backend(BUNDLED["onnx"], threads=0)
    backend = formats.get("onnx").open(BUNDLED["onnx"], threads=1)
    assert backend.name == "onnx" and backend.spec.hidden == 256
