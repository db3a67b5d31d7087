"""The checks every open runs first (runtime/formats.py, checked_open), torch-free: the bundled
files carry checksums that `mpx info` shows; a flipped byte or an edited spec is one line
naming the file, never other music; a spec nested 100,000 deep is one line in every format;
torch.export and AOTInductor archives that would make torch unpickle, evaluate or load code
beyond what mpx exports are refused before torch sees them. Each case failed before issue 21's
checks on open (the compiled archives torch itself made: tests/test_pt2.py)."""
from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import pytest

import damage
import fake_archives
from clitools import mpx, one_line_error
from conftest import ARTIFACTS, run_cli
from mpx.runtime import formats, integrity, load
from mpx.runtime.errors import ArtifactError, MpxError
from mpx.runtime.info import describe, format_description

BUNDLED = {"onnx": ARTIFACTS / "music_producter.onnx", "torchscript": ARTIFACTS / "music_producter.pt",
           "eager": ARTIFACTS / "model.safetensors"}
SEED = ARTIFACTS / "seed.mid"


def refused(capsys: pytest.CaptureFixture[str], path: Path, *needles: str) -> None:
    """Opening `path` (every command opens through checked_open) and `mpx info` on it: each one
    line naming the file and saying `needles`."""
    with pytest.raises(MpxError) as caught:
        formats.of(path).check(path)
    assert str(path) in str(caught.value) and all(n in str(caught.value) for n in needles), caught.value
    code, _, err = mpx(capsys, "info", str(path))
    one_line_error(code, err, str(path), *needles)
    code, _, err = mpx(capsys, "run", str(SEED), "--model", str(path), "--notes", "4", "--out",
                       str(path.parent / "never.mid"))
    one_line_error(code, err, str(path), *needles)
    assert not (path.parent / "never.mid").exists()


# == checksums =================================================================================
@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_the_bundled_files_carry_a_checksum_that_info_shows(name: str) -> None:
    info = describe(BUNDLED[name])
    assert info["integrity"] == "ok"
    assert "checksum ok (sha256 of weights, graph and spec match the record made at export)" in format_description(info)
    assert formats.get(name).check(BUNDLED[name])["integrity"] == "ok"


def _weight_offset(path: Path) -> int:
    """A byte in the middle of the file's largest weight."""
    if path.suffix == ".pt":
        import zipfile
        with zipfile.ZipFile(path) as archive:
            largest = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        return damage.member_offset(path, largest.filename)
    if path.suffix == ".safetensors":
        data = path.read_bytes()
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + size])
        begin, end = max((v["data_offsets"] for k, v in header.items() if k != "__metadata__"),
                         key=lambda o: o[1] - o[0])
        return 8 + size + (begin + end) // 2
    return len(path.read_bytes()) // 3  # ONNX: the initializers fill most of the graph, before the metadata


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_a_flipped_byte_in_a_weight_is_one_line_never_other_music(name: str, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    source = BUNDLED[name]
    flipped = damage.flip_file(source, tmp_path / f"flipped{source.suffix}", _weight_offset(source))
    message = "does not read back" if name == "torchscript" else "its weights or graph changed after export"
    refused(capsys, flipped, "damaged", message)


def test_a_pt_member_rewritten_with_a_valid_crc_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    forged = damage.rewrite_zip(BUNDLED["torchscript"], tmp_path / "forged.pt",
                                {"/data/3": lambda data: damage.flip(data, len(data) // 2)})
    refused(capsys, forged, "damaged: its weights or graph changed after export")


@pytest.mark.parametrize("name", sorted(BUNDLED))
@pytest.mark.parametrize("edit", ["velocity_bins", "step_max"])
def test_a_spec_edit_on_unchanged_weights_is_refused(name: str, edit: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A bin count or a range changed in the spec, the graph and weights untouched: every note
    would be decoded to other values (before: scored and run with exit 0)."""
    change = {"velocity_bins": lambda s: s["config"].update(velocity_bins=31),
              "step_max": lambda s: s["config"].update(step_max=8.0)}[edit]
    source = BUNDLED[name]
    edited = damage.edit_spec(source, tmp_path / f"edited{source.suffix}", change)
    refused(capsys, edited, "damaged: its spec was changed after export")


def test_a_file_without_a_checksum_opens_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    old = damage.unrecorded(BUNDLED["onnx"], tmp_path / "old.onnx")
    assert describe(old)["integrity"] == "not recorded"
    with caplog.at_level(logging.WARNING):
        notes = load(old).generate(_primer(), 8, seed=3)
    assert "old.onnx: carries no checksum" in caplog.text
    assert (notes == load(BUNDLED["onnx"]).generate(_primer(), 8, seed=3)).all()


def _primer():  # type: ignore[no-untyped-def]
    from mpx.runtime import read_notes
    return read_notes(SEED)[:32]


def test_a_damaged_integrity_record_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = damage.edit_spec(BUNDLED["onnx"], tmp_path / "bad.onnx", lambda s: s.update(integrity=[1]))
    refused(capsys, bad, "damaged: its integrity record is not one mpx writes")
    record = damage.rewrite_zip(BUNDLED["torchscript"], tmp_path / "bad.pt", {integrity.RECORD_MEMBER: lambda _: b"[1"})
    refused(capsys, record, "is not JSON")


# == the spec's schema: size and nesting =========================================================
def _nested(source: Path, target: Path) -> Path:
    return damage.edit_spec_text(source, target, lambda _: "[" * 100_000)


@pytest.mark.parametrize("kind", ["onnx", "torchscript", "eager", "pt2", "aoti"])
def test_a_spec_nested_100000_deep_is_one_line_in_every_format(kind: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Before: RecursionError (a traceback) in every format."""
    if kind in BUNDLED:
        source = BUNDLED[kind]
    else:
        spec = json.dumps(describe(BUNDLED["onnx"])["spec"])
        source = (fake_archives.pt2_archive(tmp_path / "m.pt2", spec) if kind == "pt2"
                  else fake_archives.aoti_package(tmp_path / "m.aoti.pt2", spec))
    target = _nested(source, tmp_path / f"nested{''.join(source.suffixes)}")
    refused(capsys, target, "spec nests 100,000 levels deep")


def test_a_spec_too_large_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = damage.edit_spec(BUNDLED["onnx"], tmp_path / "big.onnx", lambda s: s.update(data={"x": "y" * (2 << 20)}))
    refused(capsys, big, "bytes, more than the 1,048,576 an mpx file holds")


# == torch.export archives: nothing that unpickles, evaluates or loads code =======================
def _spec() -> str:
    return json.dumps(describe(BUNDLED["onnx"])["spec"])


class Payload:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        import os
        return (os.system, ("touch PAYLOAD-RAN",))


PT2_PAYLOADS = {
    "use_pickle": (dict(weights={"lstm.lstm.weight_hh_l0": {"path_name": "weight_0", "use_pickle": True,
                                                            "tensor_meta": None}}),
                   "is stored as a pickle (use_pickle)"),
    "sample inputs": (dict(samples=fake_archives.sample_inputs(pickle.dumps(Payload(), protocol=2))),
                      "sample inputs are a pickle that calls posix.system"),
    "opaque constant": (dict(extra={"data/constants/opaque_obj_0": pickle.dumps(Payload())}),
                        "holds data/constants/opaque_obj_0"),
    "legacy weights": (dict(extra={"data/weights/model.pt": pickle.dumps(Payload())}), "holds data/weights/model.pt"),
    "native code": (dict(extra={"data/aotinductor/model/x.wrapper.so": fake_archives.elf()}),
                    "native code: an AOTInductor model"),
    "sympy": (dict(model=fake_archives.graph(graph_module={"graph": {"tensor_values": {"x": {"sizes": [{"as_expr": {
        "expr_str": "__import__('os').system('touch PAYLOAD-RAN')"}}]}}}})), "is not an expression of sizes"),
    "guards": (dict(model=fake_archives.graph(guards_code=["__import__('os').system('touch PAYLOAD-RAN') == 0"])),
               "its guards_code is not a comparison of input sizes"),
    "guards quote": (dict(model=fake_archives.graph(guards_code=['L[\'x\'].size()[0] == 1", exec("1")) #'])),
                     "its guards_code is not a comparison"),
    "load_inline": (dict(model=fake_archives.graph(graph_module={"graph": {"nodes": [
        {"target": "torch.utils.cpp_extension.load_inline"}]}})), "calls torch.utils.cpp_extension.load_inline"),
    "from_file": (dict(model=fake_archives.graph(graph_module={"graph": {"nodes": [
        {"target": "torch.ops.aten.from_file.default"}]}})), "calls torch.ops.aten.from_file.default"),
    "custom object": (dict(model=fake_archives.graph(graph_module={"graph": {"custom_obj_values": {"x": {}}}})),
                      "uses custom objects"),
}


@pytest.mark.parametrize("payload", sorted(PT2_PAYLOADS))
def test_a_pt2_that_would_make_torch_run_code_is_refused_before_torch_sees_it(
        payload: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    changes, message = PT2_PAYLOADS[payload]
    path = fake_archives.pt2_archive(tmp_path / "x.pt2", _spec(), **changes)  # type: ignore[arg-type]
    refused(capsys, path, "refused" if payload != "sample inputs" else "", message)
    assert not (tmp_path / "PAYLOAD-RAN").exists()


def test_a_well_formed_pt2_passes_the_checks(tmp_path: Path) -> None:
    facts = formats.get("pt2").check(fake_archives.pt2_archive(tmp_path / "x.pt2", _spec()))
    assert facts["integrity"] == "not recorded" and facts["spec"].hidden == 256


def test_a_pt2_that_is_not_a_zip_is_one_line_without_torchs_traceback(tmp_path: Path) -> None:
    """Before: torch logged a 13-line traceback ("Ran into the following error when
    deserializing") before mpx's line."""
    (tmp_path / "text.pt2").write_text("not an archive")
    done = run_cli("run", str(SEED), "--model", str(tmp_path / "text.pt2"), "--out", str(tmp_path / "x.mid"))
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "text.pt2: not a readable torch.export archive" in done.stderr


# == AOTInductor packages: one whole library, the sizes it was compiled for ======================
AOTI_DAMAGE = {
    "cut library": (dict(library=fake_archives.elf(4096, segment_end=8192)), "is cut short at 4,096 bytes"),
    "not elf": (dict(library=b"MZ not a library"), "is not an ELF file"),
    "two libraries": (dict(extra={"data/aotinductor/model/def.wrapper.so": fake_archives.elf()}),
                      "holds 2 compiled libraries"),
    "a program inside": (dict(extra={"models/model.json": b"{}"}), "holds models/model.json"),
    "compiled for 128": (dict(hidden=128), "spec says 1 LSTM layer(s) of hidden size 256, its compiled weights 1 of 128"),
}


@pytest.mark.parametrize("case", sorted(AOTI_DAMAGE))
def test_an_aoti_package_is_checked_before_its_library_is_loaded(case: str, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    changes, message = AOTI_DAMAGE[case]
    path = fake_archives.aoti_package(tmp_path / "x.aoti.pt2", _spec(), **changes)  # type: ignore[arg-type]
    refused(capsys, path, message)


def test_help_and_info_say_which_formats_are_programs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for command in ("run", "eval"):
        _, out, _ = mpx(capsys, command, "--help")
        text = " ".join(out.split())
        assert ".aoti.pt2 (AOTInductor package: native code: a compiled shared library)" in text
        assert ".pt (TorchScript archive: TorchScript code)" in text and "is a program" in text
    info = describe(fake_archives.aoti_package(tmp_path / "x.aoti.pt2", _spec()))
    assert "a .aoti.pt2 file is a program (native code" in format_description(info)
