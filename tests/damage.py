"""Damaging model files as a disk, a download or a careless edit would, torch-free: a flipped
byte, a member rewritten (with a fresh, valid CRC), a spec edited, the integrity record taken
out (a file as written before mpx recorded one)."""
from __future__ import annotations

import json
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mpx.runtime import integrity
from mpx.runtime.contract import SPEC_KEY

Change = Callable[[bytes], "bytes | None"]  # a member's new bytes; None drops it


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def flip_file(source: Path, target: Path, at: int) -> Path:
    target.write_bytes(flip(source.read_bytes(), at))
    return target


def rewrite_zip(source: Path, target: Path, changes: dict[str, Change], add: dict[str, bytes] | None = None) -> Path:
    """A copy of an archive with the members whose names end with a key of `changes` rewritten
    (valid CRCs: what a careful forger or a tool that re-zips makes), and `add` appended under
    the archive's top folder."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        top = src.namelist()[0].split("/", 1)[0]
        for info in src.infolist():
            data = src.read(info)
            for suffix, change in changes.items():
                if info.filename.endswith(suffix):
                    data = change(data)
                    break
            if data is not None:
                dst.writestr(info, data)
        for name, data in (add or {}).items():
            dst.writestr(f"{top}/{name}", data)
    return target


def unrecorded(source: Path, target: Path) -> Path:
    """The file as written before mpx recorded checksums."""
    if zipfile.is_zipfile(source):
        return rewrite_zip(source, target, {integrity.RECORD_MEMBER: lambda _: None})
    return edit_spec(source, target, lambda spec: spec.pop(integrity.KEY, None))


def member_offset(path: Path, suffix: str, fraction: float = 0.5) -> int:
    """A byte inside the stored data of the first member whose name ends with `suffix`."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(suffix))
    data = path.read_bytes()
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    return info.header_offset + 30 + name_length + extra_length + int(info.compress_size * fraction)


def edit_spec(source: Path, target: Path, change: Callable[[dict[str, Any]], object]) -> Path:
    """The file with its spec edited (the integrity record kept, as an edit would keep it),
    every other byte unchanged: ONNX, safetensors, or an archive's spec member."""
    def edited(text: str) -> str:
        spec = json.loads(text)
        change(spec)
        return json.dumps(spec)
    return edit_spec_text(source, target, edited)


def edit_spec_text(source: Path, target: Path, edited: Callable[[str], str]) -> Path:
    """The file with its spec's text replaced by `edited(text)`."""
    data = source.read_bytes()
    if source.suffix == ".onnx":
        text, _, where = integrity.onnx_parts(data, str(source))
        assert text is not None and where is not None
        new = edited(text).encode()
        key = SPEC_KEY.encode()
        entry = b"\x0a" + _varint(len(key)) + key + b"\x12" + _varint(len(new)) + new
        target.write_bytes(data[:where[0]] + _varint(14 << 3 | 2) + _varint(len(entry)) + entry + data[where[1]:])
    elif source.suffix == ".safetensors":
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + size])
        header["__metadata__"][SPEC_KEY] = edited(header["__metadata__"][SPEC_KEY])
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        target.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + size:])
    else:
        def member(raw: bytes) -> bytes:
            found = json.loads(raw)
            if isinstance(found, dict) and SPEC_KEY in found:  # AOTInductor metadata: the spec as text
                found[SPEC_KEY] = edited(found[SPEC_KEY])
                return json.dumps(found).encode()
            return edited(raw.decode()).encode()
        rewrite_zip(source, target, {"extra/mpx_spec.json": member, "wrapper_metadata.json": member})
    return target


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
