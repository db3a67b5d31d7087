"""runtime/integrity.py: checksums of a model file without its spec, recorded at export and
verified at open (issue 21); the wiring into every format's open is the format registry's."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from mpx.runtime import integrity
from mpx.runtime.errors import ArtifactError

from conftest import ARTIFACTS

ONNX = ARTIFACTS / "music_producter.onnx"
PT = ARTIFACTS / "music_producter.pt"
SPEC = {"spec_version": 2, "config": {"hidden": 16}, "bins": {"step": [0.0, 0.5]}}


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def test_onnx_content_leaves_out_the_spec_and_sees_every_weight() -> None:
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(ONNX))
    before = integrity.onnx_content(ONNX.read_bytes(), "x.onnx")
    proto.metadata_props[0].value = json.dumps({"other": "spec"})
    assert integrity.onnx_content(proto.SerializeToString(), "x.onnx") == before
    data = ONNX.read_bytes()
    for at in (100, len(data) // 3, len(data) // 2):  # the graph and its weights (the metadata comes last)
        assert integrity.onnx_content(flip(data, at), "x.onnx") != before


def test_a_cut_onnx_file_is_one_line() -> None:
    with pytest.raises(ArtifactError, match="x.onnx: ONNX file ends early"):
        integrity.onnx_content(ONNX.read_bytes()[:-1000], "x.onnx")


def test_an_archive_records_and_checks_its_checksum(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    shutil.copy(PT, path)
    assert integrity.check_archive(path, SPEC) == "not recorded"
    integrity.stamp_archive(path, SPEC)
    assert integrity.check_archive(path, SPEC) == "ok"
    with pytest.raises(ArtifactError, match="m.pt: damaged: its spec was changed"):
        integrity.check_archive(path, {**SPEC, "config": {"hidden": 128}})


def test_a_flipped_byte_in_an_archive_is_refused_before_anything_loads_it(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    shutil.copy(PT, path)
    integrity.stamp_archive(path, SPEC)
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda m: m.file_size)  # the largest weights
    data = path.read_bytes()
    path.write_bytes(flip(data, info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size // 2))
    with pytest.raises(ArtifactError, match="m.pt: damaged: archive member .* does not read back"):
        integrity.check_archive(path, SPEC)


def test_a_member_rewritten_with_a_valid_crc_is_caught_by_the_checksum(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    shutil.copy(PT, path)
    integrity.stamp_archive(path, SPEC)
    forged = tmp_path / "forged.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(forged, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data.pkl"):
                data = flip(data, len(data) // 2)  # another byte, and a fresh CRC
            dst.writestr(info, data)
    with pytest.raises(ArtifactError, match="forged.pt: damaged: its weights or graph changed after export"):
        integrity.check_archive(forged, SPEC)


@pytest.mark.parametrize("data, message", [(b"not a zip", "not a zip archive"), (b"", "not a zip archive")])
def test_what_is_not_an_archive_is_one_line(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "m.pt2"
    path.write_bytes(data)
    with pytest.raises(ArtifactError, match=f"m.pt2: {message}"):
        integrity.zip_content(path, "x")


def test_safetensors_content_leaves_out_the_metadata(tmp_path: Path) -> None:
    data = (ARTIFACTS / "model.safetensors").read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    header["__metadata__"] = {"mpx_spec": "another"}
    text = json.dumps(header).encode()
    other = len(text).to_bytes(8, "little") + text + data[8 + size:]
    assert integrity.safetensors_content(other) == integrity.safetensors_content(data)
    assert integrity.safetensors_content(flip(data, len(data) - 10)) != integrity.safetensors_content(data)


def test_verify_names_what_changed() -> None:
    good = {**SPEC, "integrity": integrity.record("abc", SPEC)}
    assert integrity.verify(good, "abc", "m.onnx") == "ok"
    assert integrity.verify(SPEC, "abc", "m.onnx") == "not recorded"
    with pytest.raises(ArtifactError, match="m.onnx: damaged: its weights or graph changed"):
        integrity.verify(good, "abd", "m.onnx")
    with pytest.raises(ArtifactError, match="m.onnx: damaged: its spec was changed"):
        integrity.verify({**good, "bins": {"step": [0.0, 0.6]}}, "abc", "m.onnx")
    with pytest.raises(ArtifactError, match="m.onnx: damaged: its integrity record is not one mpx writes"):
        integrity.verify({**SPEC, "integrity": [1]}, "abc", "m.onnx")
