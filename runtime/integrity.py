"""Integrity of model files: a checksum of the file, recorded when mpx writes it, verified
(as data, before any of it loads) whenever it is opened.

ONNX and safetensors files carry no checksum of their weights, torch.jit.load reads a zip
archive without checking its CRCs, and a flipped byte in a weight still makes a valid graph
that makes other music. So the writers seal every file (`seal_onnx`, `seal_safetensors`,
`seal_archive`) with a record

    {"algorithm": "sha256", "content": ..., "spec": ...}

`content` is the sha256 of the file without its record: for ONNX the model's fields but its
spec's metadata entry, for a checkpoint the tensors and their header but the spec, for a zip
archive (TorchScript `.pt`, torch.export `.pt2`, AOTInductor `.aoti.pt2`) every member but the
record's own; `spec` is the sha256 of the spec (canonical JSON, without the record). ONNX and
checkpoints keep the record in their spec (key `integrity`); an archive keeps it in a member of
its own, `<top>/extra/mpx_integrity.json`, appended so that the members before it keep their
bytes and offsets (its spec, inside the archive, is then covered by `content` too: an AOTInductor
package's spec is compiled into it). Whoever re-exports writes new checksums; nothing is kept by
hand.

Opening recomputes both: a changed weight, graph, compiled library or spec (a bin count, a
range) is one line naming the file, and reading every member of an archive checks its CRC, so
a damaged `.pt`, `.pt2` or `.aoti.pt2` is refused before torch or a native library sees it.
This detects damage, not forgery: whoever can edit a file can recompute its checksums. Files
from others are trusted as their source is (`.pt` and `.aoti.pt2` files are programs).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zipfile
from pathlib import Path
from typing import Any

from .contract import SPEC_KEY
from .errors import ArtifactError
from .spec import parse

ALGORITHM = "sha256"
KEY = "integrity"               # the spec's field (ONNX, checkpoints)
OK, NOT_RECORDED = "ok", "not recorded"
ONNX_METADATA_FIELD = 14        # ModelProto.metadata_props: where an ONNX file keeps its spec
MAX_MEMBERS = 10_000            # an archive of more is not an mpx artifact
MAX_UNPACKED = 8 << 30          # bytes, all members together: past this, a zip bomb, not a model
RECORD_MEMBER = "extra/mpx_integrity.json"  # an archive's record, under its top folder


def spec_digest(spec: dict[str, Any]) -> str:
    """sha256 of the spec as canonical JSON, without its integrity record."""
    body = {k: v for k, v in spec.items() if k != KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def record(content: str, spec: dict[str, Any]) -> dict[str, str]:
    """The integrity record of a file's content and its spec (computed without the record)."""
    return {"algorithm": ALGORITHM, "content": content, "spec": spec_digest(spec)}


def sealed_spec(spec_text: str | bytes, content: str, source: str = "") -> str:
    """The spec's JSON text with the record of `content` in it."""
    spec = spec_dict(spec_text, source)
    return json.dumps({**spec, KEY: record(content, spec)}, sort_keys=True)


def spec_dict(spec_text: str | bytes, source: str) -> dict[str, Any]:
    spec = parse(spec_text, source)
    if not isinstance(spec, dict):
        raise ArtifactError(f"{source}: spec is not a JSON object")
    return spec


# -- verifying --------------------------------------------------------------------------------
def verify(spec: dict[str, Any], content: str, source: str | os.PathLike[str]) -> str:
    """OK when the file matches the integrity record of its spec, NOT_RECORDED when the spec
    has none (a file written before mpx recorded one); ArtifactError naming the file when it
    does not match."""
    found = spec.get(KEY)
    if found is None:
        return NOT_RECORDED
    if (not isinstance(found, dict) or found.get("algorithm") != ALGORITHM
            or not all(isinstance(found.get(k), str) for k in ("content", "spec"))):
        raise ArtifactError(f"{source}: damaged: its integrity record is not one mpx writes "
                            f"({ALGORITHM} of the content and of the spec)")
    if found["spec"] != spec_digest(spec):
        raise ArtifactError(f"{source}: damaged: its spec was changed after export (checksum "
                            "mismatch); export the model again or fetch an intact copy")
    if found["content"] != content:
        raise ArtifactError(f"{source}: damaged: its weights or graph changed after export "
                            f"({ALGORITHM} {content[:12]}..., recorded {found['content'][:12]}...); "
                            "export the model again or fetch an intact copy")
    return OK


def describe(status: str) -> str:
    return {OK: f"ok ({ALGORITHM} of weights, graph and spec match the record made at export)",
            NOT_RECORDED: "not recorded (written before mpx recorded checksums): damage cannot be "
                          "told; export the model again"}.get(status, status)


def read_file(path: Path, limit: int = MAX_UNPACKED) -> bytes:
    try:
        size = path.stat().st_size
        if size > limit:
            raise ArtifactError(f"{path}: {size:,} bytes is no mpx model")
        return path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read ({exc.strerror or exc})") from None


# -- ONNX ---------------------------------------------------------------------------------------
def _varint(data: bytes, at: int, source: str) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ArtifactError(f"{source}: not a loadable ONNX model (it ends early, or is no ONNX: a varint at byte {at})")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _fields(data: bytes, source: str) -> list[tuple[int, int, int, int]]:
    """Top-level protobuf fields of a message: (field number, start, payload start, end)."""
    fields = []
    at = 0
    while at < len(data):
        start = at
        key, at = _varint(data, at, source)
        field, wire = key >> 3, key & 7
        payload = at
        if wire == 0:
            _, at = _varint(data, at, source)
        elif wire == 1:
            at += 8
        elif wire == 2:
            length, payload = _varint(data, at, source)
            at = payload + length
        elif wire == 5:
            at += 4
        else:
            raise ArtifactError(f"{source}: not a loadable ONNX model (protobuf wire type {wire} at byte {start})")
        if at > len(data) or field == 0:
            raise ArtifactError(f"{source}: not a loadable ONNX model (it ends early: cut short at {len(data):,} bytes?)")
        fields.append((field, start, payload, at))
    return fields


def _entry(data: bytes, source: str) -> tuple[bytes, bytes]:
    """(key, value) of a StringStringEntryProto."""
    out = {1: b"", 2: b""}
    for field, _, payload, end in _fields(data, source):
        if field in out:
            out[field] = data[payload:end]
    return out[1], out[2]


def onnx_parts(data: bytes, source: str = "") -> tuple[str | None, str, tuple[int, int] | None]:
    """An ONNX file's spec text (None when it has none), the sha256 of the model without its
    metadata (read without onnx or onnxruntime), and where the spec's entry lies."""
    digest = hashlib.sha256()
    spec, where = None, None
    for field, start, payload, end in _fields(data, source):
        if field != ONNX_METADATA_FIELD:
            digest.update(data[start:end])
            continue
        key, value = _entry(data[payload:end], source)
        if key == SPEC_KEY.encode():
            try:
                spec, where = value.decode("utf-8"), (start, end)
            except UnicodeDecodeError:
                raise ArtifactError(f"{source}: ONNX metadata is damaged (its spec is not UTF-8 text)") from None
    return spec, digest.hexdigest(), where


def onnx_content(data: bytes, source: str = "") -> str:
    return onnx_parts(data, source)[1]


def seal_onnx(data: bytes, source: str = "") -> bytes:
    """The ONNX file with the integrity record in its spec (its other bytes unchanged)."""
    spec, content, where = onnx_parts(data, source)
    if spec is None or where is None:
        raise ArtifactError(f"{source}: ONNX model has no mpx spec to seal")
    text = sealed_spec(spec, content, source).encode()
    key = SPEC_KEY.encode()
    entry = b"\x0a" + _encode_varint(len(key)) + key + b"\x12" + _encode_varint(len(text)) + text
    field = _encode_varint(ONNX_METADATA_FIELD << 3 | 2) + _encode_varint(len(entry)) + entry
    sealed = data[:where[0]] + field + data[where[1]:]
    if onnx_content(sealed, source) != content:  # the splice touched nothing but the spec
        raise ArtifactError(f"{source}: sealing changed the model")
    return sealed


# -- safetensors (checkpoints) --------------------------------------------------------------
def _safetensors_header(data: bytes, source: str, limit: int) -> tuple[dict[str, Any], int]:
    from .bounded_json import JsonLimit, loads
    if len(data) < 8:
        raise ArtifactError(f"{source}: not a readable safetensors checkpoint (cut short at {len(data)} bytes?)")
    size = struct.unpack("<Q", data[:8])[0]
    if size > min(len(data) - 8, limit):
        raise ArtifactError(f"{source}: not a readable safetensors checkpoint (header length {size:,} does not fit the file)")
    try:
        header = loads(data[8:8 + size], limit, max_depth=8)
    except JsonLimit as exc:
        raise ArtifactError(f"{source}: not a readable safetensors checkpoint (its header {exc})") from None
    except (UnicodeDecodeError, ValueError):
        raise ArtifactError(f"{source}: not a readable safetensors checkpoint (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ArtifactError(f"{source}: not a readable safetensors checkpoint (its header is not an object)")
    return header, size


def safetensors_parts(data: bytes, source: str = "", limit: int = 100 << 20) -> tuple[str | None, str]:
    """A safetensors file's spec text (None when it has none) and the sha256 of the file
    without it: the tensors, their header and the rest of the metadata (a training
    checkpoint's progress)."""
    header, size = _safetensors_header(data, source, limit)
    metadata = header.get("__metadata__")
    spec = None
    if isinstance(metadata, dict):
        metadata = dict(metadata)
        spec = metadata.pop(SPEC_KEY, None)
        header = {**header, "__metadata__": metadata}
    digest = hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    digest.update(data[8 + size:])
    return (spec if isinstance(spec, str) else None), digest.hexdigest()


def safetensors_content(data: bytes, source: str = "") -> str:
    return safetensors_parts(data, source)[1]


def seal_safetensors(data: bytes, source: str = "") -> bytes:
    """The safetensors file with the integrity record in the spec of its metadata."""
    header, size = _safetensors_header(data, source, 100 << 20)
    spec, content = safetensors_parts(data, source)
    if spec is None:
        raise ArtifactError(f"{source}: safetensors file has no mpx spec to seal")
    header["__metadata__"] = {**header["__metadata__"], SPEC_KEY: sealed_spec(spec, content, source)}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the tensors stay 8-byte aligned, as safetensors writes them
    return struct.pack("<Q", len(text)) + text + data[8 + size:]


# -- zip archives (TorchScript .pt, torch.export .pt2, AOTInductor .aoti.pt2) ---------------
def open_archive(path: Path | io.BytesIO, source: str | os.PathLike[str] | None = None) -> zipfile.ZipFile:
    """A zip archive checked for what a zip reader would stumble on later: not a zip, cut short,
    too many members, members that unpack past MAX_UNPACKED."""
    source = source or path
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError):
        raise ArtifactError(f"{source}: not a zip archive (damaged or cut short?)") from None
    except OSError as exc:
        raise ArtifactError(f"{source}: cannot read ({exc.strerror or exc})") from None
    members = archive.infolist()
    if len(members) > MAX_MEMBERS or sum(m.file_size for m in members) > MAX_UNPACKED:
        archive.close()
        raise ArtifactError(f"{source}: an archive of {len(members):,} members unpacking to "
                            f"{sum(m.file_size for m in members):,} bytes is not an mpx model")
    return archive


def record_member(archive: zipfile.ZipFile) -> str:
    """The name of an archive's integrity member: beside its extra files, under its top folder
    (torch's loaders ignore members they do not know)."""
    names = archive.namelist()
    top = names[0].split("/", 1)[0] if names and "/" in names[0] else ""
    return f"{top}/{RECORD_MEMBER}" if top else RECORD_MEMBER


def archive_content(archive: zipfile.ZipFile, source: str | os.PathLike[str], skip: str) -> str:
    """sha256 of every member but `skip`, by name, each read whole: reading checks its CRC, so
    a damaged member is refused here, before anything loads it."""
    digest = hashlib.sha256()
    names = [m.filename for m in archive.infolist()]
    if len(set(names)) != len(names):
        raise ArtifactError(f"{source}: damaged: the archive names a member twice")
    for info in sorted(archive.infolist(), key=lambda m: m.filename):
        if info.filename == skip or info.is_dir():
            continue
        name = info.filename.encode()
        digest.update(struct.pack("<Q", len(name)) + name + struct.pack("<Q", info.file_size))
        try:
            with archive.open(info) as member:
                for block in iter(lambda: member.read(1 << 20), b""):
                    digest.update(block)
        except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, ValueError) as exc:
            raise ArtifactError(f"{source}: damaged: archive member {info.filename} does not "
                                f"read back ({_reason(exc)})") from None
    return digest.hexdigest()


def seal_archive(data: bytes, spec_text: str | bytes, source: str = "") -> bytes:
    """The archive with its integrity record appended as a member of its own: the members
    already written keep their bytes and their offsets (torch aligns them)."""
    buffer = io.BytesIO(data)
    with open_archive(buffer, source) as archive:
        member = record_member(archive)
        if member in archive.namelist():
            raise ArtifactError(f"{source}: already holds {member}")
        found = record(archive_content(archive, source, member), spec_dict(spec_text, source))
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(member, json.dumps(found, sort_keys=True))
    return buffer.getvalue()


def check_archive(path: Path, spec_text: str | bytes | None) -> str:
    """OK or NOT_RECORDED for an archive (every member read, so every CRC checked);
    ArtifactError naming the file when it is damaged."""
    from .bounded_json import loads
    with open_archive(path) as archive:
        member = record_member(archive)
        try:
            text = archive.read(member) if member in archive.namelist() else None
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
            raise ArtifactError(f"{path}: damaged: {member} does not read back ({_reason(exc)})") from None
        content = archive_content(archive, path, member)
    if text is None or spec_text is None:
        return NOT_RECORDED
    try:
        found = loads(text, 4096, max_depth=2)
    except (UnicodeDecodeError, ValueError):
        raise ArtifactError(f"{path}: damaged: {member} is not JSON") from None
    if not isinstance(found, dict):
        raise ArtifactError(f"{path}: damaged: {member} is not a record mpx writes")
    return verify({**spec_dict(spec_text, str(path)), KEY: found}, content, path)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:160] if text else "") or type(exc).__name__
