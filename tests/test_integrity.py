"""runtime/integrity.py: checksums of a model file, recorded by the writers (seal_*) and
verified as data (issue 21). Every format's open checks them: tests/test_checks_on_open.py."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from mpx.runtime import integrity
from mpx.runtime.errors import ArtifactError

from conftest import ARTIFACTS

ONNX = ARTIFACTS / "music_producter.onnx"
PT = ARTIFACTS / "music_producter.pt"
SPEC = {"spec_version": 2, "config": {"hidden": 16}, "bins": {"step": [0.0, 0.5]}}
SPEC_TEXT = json.dumps(SPEC)


def unsealed_pt(path: Path) -> Path:
    """The bundled .pt without its integrity member (as torch wrote it)."""
    with zipfile.ZipFile(PT) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith(integrity.RECORD_MEMBER):
                dst.writestr(info, src.read(info))
    return path


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
    with pytest.raises(ArtifactError, match="x.onnx: not a loadable ONNX model \\(it ends early"):
        integrity.onnx_content(ONNX.read_bytes()[:-1000], "x.onnx")


def test_onnx_sealing_changes_the_spec_entry_only() -> None:
    data = ONNX.read_bytes()
    spec, content, _ = integrity.onnx_parts(data, "x.onnx")
    resealed = integrity.seal_onnx(data, "x.onnx")  # the bundled graph is sealed: a new record, same content
    assert integrity.onnx_parts(resealed, "x.onnx")[1] == content
    text, _, _ = integrity.onnx_parts(resealed, "x.onnx")
    assert integrity.verify(json.loads(text), content, "x.onnx") == "ok"


def test_an_archive_records_and_checks_its_checksum(tmp_path: Path) -> None:
    path = unsealed_pt(tmp_path / "m.pt")
    assert integrity.check_archive(path, SPEC_TEXT) == "not recorded"
    path.write_bytes(integrity.seal_archive(path.read_bytes(), SPEC_TEXT))
    assert integrity.check_archive(path, SPEC_TEXT) == "ok"
    with pytest.raises(ArtifactError, match="m.pt: damaged: its spec was changed"):
        integrity.check_archive(path, json.dumps({**SPEC, "config": {"hidden": 128}}))
    with pytest.raises(ArtifactError, match="already holds"):
        integrity.seal_archive(path.read_bytes(), SPEC_TEXT)


def test_a_flipped_byte_in_an_archive_is_refused_before_anything_loads_it(tmp_path: Path) -> None:
    path = unsealed_pt(tmp_path / "m.pt")
    path.write_bytes(integrity.seal_archive(path.read_bytes(), SPEC_TEXT))
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda m: m.file_size)  # the largest weights
    data = path.read_bytes()
    path.write_bytes(flip(data, info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size // 2))
    with pytest.raises(ArtifactError, match="m.pt: damaged: archive member .* does not read back"):
        integrity.check_archive(path, SPEC_TEXT)


def test_a_member_rewritten_with_a_valid_crc_is_caught_by_the_checksum(tmp_path: Path) -> None:
    path = unsealed_pt(tmp_path / "m.pt")
    path.write_bytes(integrity.seal_archive(path.read_bytes(), SPEC_TEXT))
    forged = tmp_path / "forged.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(forged, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data.pkl"):
                data = flip(data, len(data) // 2)  # another byte, and a fresh CRC
            dst.writestr(info, data)
    with pytest.raises(ArtifactError, match="forged.pt: damaged: its weights or graph changed after export"):
        integrity.check_archive(forged, SPEC_TEXT)


@pytest.mark.parametrize("data, message", [(b"not a zip", "not a zip archive"), (b"", "not a zip archive")])
def test_what_is_not_an_archive_is_one_line(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "m.pt2"
    path.write_bytes(data)
    with pytest.raises(ArtifactError, match=f"m.pt2: {message}"):
        integrity.check_archive(path, SPEC_TEXT)


def test_safetensors_content_leaves_out_the_spec_only(tmp_path: Path) -> None:
    data = (ARTIFACTS / "model.safetensors").read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    header["__metadata__"] = {"mpx_spec": "another"}
    text = json.dumps(header).encode()
    other = len(text).to_bytes(8, "little") + text + data[8 + size:]
    assert integrity.safetensors_content(other) == integrity.safetensors_content(data)
    header["__metadata__"]["mpx_progress"] = "{}"  # a training checkpoint's progress is covered
    text = json.dumps(header).encode()
    progress = len(text).to_bytes(8, "little") + text + data[8 + size:]
    assert integrity.safetensors_content(progress) != integrity.safetensors_content(data)
    assert integrity.safetensors_content(flip(data, len(data) - 10)) != integrity.safetensors_content(data)


def test_a_sealed_checkpoint_keeps_its_tensors_aligned_and_whole() -> None:
    data = (ARTIFACTS / "model.safetensors").read_bytes()
    sealed = integrity.seal_safetensors(data, "m.safetensors")
    size, new = int.from_bytes(data[:8], "little"), int.from_bytes(sealed[:8], "little")
    assert new % 8 == 0 and sealed[8 + new:] == data[8 + size:]
    spec, content = integrity.safetensors_parts(sealed)
    assert integrity.verify(json.loads(spec), content, "m.safetensors") == "ok"


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
