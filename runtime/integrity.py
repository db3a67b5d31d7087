"""Integrity of model files: a checksum of everything but the spec, recorded in the spec at
export, verified when the file is opened, before any of it runs.

ONNX and safetensors files carry no checksum of their weights, and a flipped byte in a weight
still makes a valid graph that makes other music. So `mpx export` (and training, for a
checkpoint) records in the spec `integrity = {"algorithm": "sha256", "content": ..., "spec": ...}`:
`content` is the sha256 of the file without its spec (the ONNX model without its metadata, the
archive's members but the spec's, the safetensors tensors and their header without its
metadata), `spec` the sha256 of the spec itself without this record. Opening the file
recomputes both: any byte changed in a weight, the graph, a compiled library or the spec (a bin
count, a range) is one line naming the file. Reading the members of a zip archive checks their
CRCs too, so a damaged `.pt`, `.pt2` or `.aoti.pt2` is refused before torch or a native library
sees it.

This detects damage, not forgery: whoever can edit a file can also recompute its checksums.
Files from others are trusted as their source is (a `.pt` and an `.aoti.pt2` are programs).
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import ArtifactError

ALGORITHM = "sha256"
KEY = "integrity"               # the spec's field
ONNX_METADATA_FIELD = 14        # ModelProto.metadata_props: where an ONNX file keeps its spec
MAX_MEMBERS = 10_000            # an archive of more is not an mpx artifact
MAX_UNPACKED = 8 << 30          # bytes, all members together: past this, a zip bomb, not a model


def spec_digest(spec: dict[str, Any]) -> str:
    """sha256 of the spec as canonical JSON, without its integrity record."""
    body = {k: v for k, v in spec.items() if k != KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def record(content: str, spec: dict[str, Any]) -> dict[str, str]:
    """The integrity record to store in `spec` (computed over the spec without it)."""
    return {"algorithm": ALGORITHM, "content": content, "spec": spec_digest(spec)}


# -- the content of each kind of file, without its spec -----------------------------------------
def onnx_content(data: bytes, source: str = "") -> str:
    """sha256 of an ONNX file's top-level protobuf fields but its metadata (the spec), in order,
    each with its tag and length: read without onnx or onnxruntime."""
    digest = hashlib.sha256()
    at = 0
    while at < len(data):
        start = at
        key, at = _varint(data, at, source)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, at = _varint(data, at, source)
        elif wire == 1:
            at += 8
        elif wire == 2:
            length, at = _varint(data, at, source)
            at += length
        elif wire == 5:
            at += 4
        else:
            raise ArtifactError(f"{source}: not an ONNX model (protobuf wire type {wire} at byte {start})")
        if at > len(data):
            raise ArtifactError(f"{source}: ONNX file ends early (cut short at {len(data):,} bytes?)")
        if field != ONNX_METADATA_FIELD:
            digest.update(data[start:at])
    return digest.hexdigest()


def _varint(data: bytes, at: int, source: str) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ArtifactError(f"{source}: ONNX file ends early or is not ONNX (a varint at byte {at})")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def open_archive(path: Path) -> zipfile.ZipFile:
    """A zip archive checked for what a zip reader would stumble on later: not a zip, cut short,
    too many members, members that unpack past MAX_UNPACKED."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ArtifactError(f"{path}: not a zip archive (damaged or cut short?)") from None
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read ({exc.strerror or exc})") from None
    members = archive.infolist()
    if len(members) > MAX_MEMBERS or sum(m.file_size for m in members) > MAX_UNPACKED:
        archive.close()
        raise ArtifactError(f"{path}: an archive of {len(members):,} members unpacking to "
                            f"{sum(m.file_size for m in members):,} bytes is not an mpx model")
    return archive


def zip_content(path: Path, spec_member: str) -> str:
    """sha256 of every member of the archive but the spec, by name, each read whole: reading
    checks its CRC, so a damaged member is refused here, before anything loads it."""
    digest = hashlib.sha256()
    with open_archive(path) as archive:
        for info in sorted(archive.infolist(), key=lambda m: m.filename):
            if info.filename == spec_member or info.is_dir():
                continue
            name = info.filename.encode()
            digest.update(struct.pack("<Q", len(name)) + name + struct.pack("<Q", info.file_size))
            try:
                with archive.open(info) as member:
                    for block in iter(lambda: member.read(1 << 20), b""):
                        digest.update(block)
            except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError) as exc:
                raise ArtifactError(f"{path}: damaged: archive member {info.filename} does not "
                                    f"read back ({_reason(exc)})") from None
    return digest.hexdigest()


def safetensors_content(data: bytes, source: str = "") -> str:
    """sha256 of a safetensors file's tensors and their header, without the header's
    __metadata__ (where a checkpoint keeps its spec)."""
    if len(data) < 8:
        raise ArtifactError(f"{source}: not a safetensors file (cut short at {len(data)} bytes?)")
    size = struct.unpack("<Q", data[:8])[0]
    if size > len(data) - 8:
        raise ArtifactError(f"{source}: not a safetensors file (its header runs past the end)")
    try:
        header = json.loads(data[8:8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ArtifactError(f"{source}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ArtifactError(f"{source}: not a safetensors file (its header is not an object)")
    header.pop("__metadata__", None)
    digest = hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    digest.update(data[8 + size:])
    return digest.hexdigest()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:160] if text else "") or type(exc).__name__


# -- verifying --------------------------------------------------------------------------------
def verify(spec: dict[str, Any], content: str, source: str | os.PathLike[str]) -> str:
    """"ok" when the file matches the integrity record of its spec, "not recorded" when the
    spec has none (a file from before mpx recorded it); ArtifactError naming the file when it
    does not match."""
    found = spec.get(KEY)
    if found is None:
        return "not recorded"
    if (not isinstance(found, dict) or found.get("algorithm") != ALGORITHM
            or not all(isinstance(found.get(k), str) for k in ("content", "spec"))):
        raise ArtifactError(f"{source}: damaged: its integrity record is not one mpx writes "
                            f"({ALGORITHM} of the content and of the spec)")
    if found["spec"] != spec_digest(spec):
        raise ArtifactError(f"{source}: damaged: its spec was changed after export (checksum "
                            "mismatch); export the model again")
    if found["content"] != content:
        raise ArtifactError(f"{source}: damaged: its weights or graph changed after export "
                            f"({ALGORITHM} {content[:12]}..., recorded {found['content'][:12]}...); "
                            "export the model again or fetch an intact copy")
    return "ok"


def describe(status: str) -> str:
    return {"ok": f"{ALGORITHM} of weights, graph and spec match the record made at export",
            "not recorded": "no checksum recorded (made before mpx recorded one): damage cannot be told"}.get(
        status, status)


def members(path: Path) -> Iterable[str]:
    with open_archive(path) as archive:
        return [m.filename for m in archive.infolist()]


# -- archives (TorchScript .pt, torch.export .pt2, AOTInductor .aoti.pt2) -----------------------
RECORD_MEMBER = "extra/mpx_integrity.json"  # under the archive's top folder


def record_member(path: Path) -> str:
    """The name of an archive's integrity member: beside its extra files, under its top folder
    (torch's loaders ignore members they do not know)."""
    with open_archive(path) as archive:
        names = archive.namelist()
    top = names[0].split("/", 1)[0] if names and "/" in names[0] else ""
    return f"{top}/{RECORD_MEMBER}" if top else RECORD_MEMBER


def stamp_archive(path: Path, spec: dict[str, Any]) -> dict[str, str]:
    """Record the archive's checksum in a member of its own, appended: the members already
    written keep their bytes and their offsets (torch aligns them). Returns the record."""
    member = record_member(path)
    found = record(zip_content(path, member), spec)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_STORED) as archive:
        if member in archive.namelist():
            raise ArtifactError(f"{path}: already holds {member}")
        archive.writestr(member, json.dumps(found, sort_keys=True))
    return found


def check_archive(path: Path, spec: dict[str, Any]) -> str:
    """verify() for an archive: its record is a member of its own ("not recorded" if none)."""
    member = record_member(path)
    with open_archive(path) as archive:
        try:
            text = archive.read(member) if member in archive.namelist() else None
        except (zipfile.BadZipFile, OSError) as exc:
            raise ArtifactError(f"{path}: damaged: {member} does not read back ({_reason(exc)})") from None
    content = zip_content(path, member)  # every other member read whole: their CRCs checked
    if text is None:
        return "not recorded"
    try:
        found = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ArtifactError(f"{path}: damaged: {member} is not JSON") from None
    if not isinstance(found, dict):
        raise ArtifactError(f"{path}: damaged: {member} is not a record mpx writes")
    return verify({**spec, KEY: found}, content, path)
