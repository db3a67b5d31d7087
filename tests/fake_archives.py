"""torch.export (.pt2) and AOTInductor (.aoti.pt2) archives built without torch: the members
`mpx info` and the checks on open read, laid out as torch 2.13 writes them for mpx (a graph
with nothing in it, a shared library that is a bare ELF header). For the torch-free tier; the
real ones are exported once per session (conftest.compiled_artifacts)."""
from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

from mpx.runtime import contract

RECORDS = {"archive_format": "pt2", "archive_version": "0", ".data/version": "6", "byteorder": "little"}


def _tensor_meta(shape: list[int]) -> dict:
    return {"dtype": 7, "sizes": [{"as_int": n} for n in shape], "requires_grad": False,
            "device": {"type": "cpu", "index": None}, "strides": [], "storage_offset": {"as_int": 0}, "layout": 7}


def sample_inputs(blob: bytes | None = None) -> bytes:
    """A torch.save archive whose pickle names no global at all (or `blob`, a pickle of one's own)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model/data.pkl", blob if blob is not None else pickle.dumps(((), {}), protocol=2))
        archive.writestr("model/version", "3")
    return buffer.getvalue()


def graph(**changes: object) -> dict:
    model = {"graph_module": {"graph": {"nodes": [{"target": "torch.ops.aten.add.Tensor"}],
                                        "tensor_values": {"notes": {"sizes": [
                                            {"as_expr": {"expr_str": "Symbol('s15', positive=True, integer=True)"}}]}},
                                        "custom_obj_values": {}}},
             "guards_code": ["L['c0'].size()[1] == L['h0'].size()[1]"], "schema_version": {"major": 8}}
    model.update(changes)
    return model


def pt2_archive(path: Path, spec: str | None, *, hidden: int = 256, model: dict | None = None,
                weights: dict | None = None, extra: dict[str, bytes] | None = None,
                samples: bytes | None = None) -> Path:
    weights = weights if weights is not None else {
        "lstm.lstm.weight_hh_l0": {"path_name": "weight_0", "is_param": True, "use_pickle": False,
                                   "tensor_meta": _tensor_meta([4 * hidden, hidden])}}
    members = {**RECORDS, "models/model.json": json.dumps(model if model is not None else graph()),
               "data/weights/model_weights_config.json": json.dumps({"config": weights}),
               "data/weights/weight_0": b"\0" * 16,
               "data/constants/model_constants_config.json": json.dumps({"config": {}}),
               "data/sample_inputs/model.pt": samples if samples is not None else sample_inputs(),
               f"extra/{contract.TIME_AXIS_KEY}": "dynamic", **(extra or {})}
    if spec is not None:
        members[f"extra/{contract.PT2_SPEC_FILE}"] = spec
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(f"archive/{name}", data)
    return path


def elf(size: int = 4096, segment_end: int | None = None) -> bytes:
    """A 64-bit little-endian ELF file with one loadable segment (never loaded by these tests)."""
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<QQ", header, 32, 64, 0)           # program headers at 64, no section headers
    struct.pack_into("<HHHH", header, 54, 56, 1, 64, 0)
    program = struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, segment_end if segment_end is not None else size, size, 4096)
    return bytes(header) + program + b"\0" * (size - 64 - len(program))


def wrapper_cpp(hidden: int = 256, layers: int = 1) -> str:
    lines = []
    for layer in range(layers):
        lines += [f"    constants_info_[{layer}].shape = {{{4 * hidden}, {hidden}}};",
                  f'    constants_info_[{layer}].original_fqn = "lstm.lstm.weight_hh_l{layer}";']
    return "\n".join(lines) + "\n"


def aoti_package(path: Path, spec: str | None, *, hidden: int = 256, library: bytes | None = None,
                 extra: dict[str, bytes] | None = None, time_axis: str = "1") -> Path:
    metadata = {contract.TIME_AXIS_KEY: time_axis, "AOTI_PLATFORM": "linux", "AOTI_CPU_ISA": "AVX2"}
    if spec is not None:
        metadata[contract.SPEC_KEY] = spec
    model = "data/aotinductor/model/abc"
    members = {**RECORDS, f"{model}.wrapper_metadata.json": json.dumps(metadata),
               f"{model}.wrapper.cpp": wrapper_cpp(hidden), f"{model}.wrapper.so": library if library is not None else elf(),
               **(extra or {})}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(f"m/{name}", data)
    return path
