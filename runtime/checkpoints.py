"""The checkpoint file format, owned here and used by both sides: the training code writes and
loads checkpoints with torch (mpx.train.checkpoint), `mpx info` reads their header without it.

A checkpoint is one safetensors file: tensors `model.*` (the model's state dict; a training
checkpoint adds `optim.*`, `lanes.*` and `rng.*`) and a str->str metadata map holding the spec
(`mpx_spec`) and, for a training checkpoint, its progress (`mpx_progress`). Nothing in it is
executable: loading never runs pickled code. Its spec records the sha256 of the rest of the file
(runtime/integrity.py), written by `seal` and checked by `verify` before the tensors are used.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from . import bounded_json, integrity
from .contract import SPEC_KEY
from .errors import ArtifactError, SpecError
from .spec import ModelSpec

MODEL_PREFIX = "model."
PROGRESS_KEY = "mpx_progress"


@dataclasses.dataclass(frozen=True)
class Header:
    spec: ModelSpec
    shapes: dict[str, list[int]]   # every tensor's shape, by key
    progress: dict[str, Any]       # {} for a model-only checkpoint
    spec_json: str = ""            # the spec as stored (with its integrity record)

    @property
    def weights(self) -> dict[str, list[int]]:
        return {k[len(MODEL_PREFIX):]: v for k, v in self.shapes.items() if k.startswith(MODEL_PREFIX)}


def spec_of(metadata: dict[str, str], source: str) -> ModelSpec:
    """The spec in a checkpoint's metadata; ArtifactError when there is none or it is damaged."""
    if SPEC_KEY not in metadata:
        raise ArtifactError(f"{source}: safetensors file carries no mpx spec (not an mpx checkpoint)")
    try:
        return ModelSpec.from_json(metadata[SPEC_KEY], source=source)
    except SpecError as exc:
        raise ArtifactError(str(exc)) from None


def progress_of(metadata: dict[str, str], source: str) -> dict[str, Any]:
    if PROGRESS_KEY not in metadata:
        return {}
    try:
        progress = bounded_json.loads(metadata[PROGRESS_KEY], MAX_HEADER, max_depth=16)
    except ValueError:
        progress = None
    if not isinstance(progress, dict):
        raise ArtifactError(f"{source}: the training progress in this checkpoint is damaged")
    return progress


def metadata(progress: dict[str, Any] | None, spec: ModelSpec) -> dict[str, str]:
    """The metadata map a checkpoint is written with."""
    out = {SPEC_KEY: spec.to_json()}
    if progress is not None:
        out[PROGRESS_KEY] = json.dumps(progress)
    return out


MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header
MAX_FILE = 16 << 30     # a checkpoint larger than this is no mpx model's


def seal(data: bytes, source: str = "") -> bytes:
    """A checkpoint's bytes with the integrity record in its spec (what `save` writes)."""
    return integrity.seal_safetensors(data, source)


def verify(data: bytes, path: str | os.PathLike[str]) -> tuple[Header, str]:
    """The header of a checkpoint's bytes and its integrity status (integrity.OK, or
    NOT_RECORDED for a checkpoint written before mpx recorded one); ArtifactError naming the
    file when it is damaged: a tensor, the header or the spec changed since it was written."""
    header = parse_header(data, path)
    return header, checksum(data, header, path)


def checksum(data: bytes, header: Header, path: str | os.PathLike[str]) -> str:
    """The integrity status of a checkpoint's bytes (their header parsed)."""
    _, content = integrity.safetensors_parts(data, str(path), MAX_HEADER)
    return integrity.verify(integrity.spec_dict(header.spec_json, str(path)), content, path)


def read_whole(path: str | os.PathLike[str]) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such checkpoint")
    return integrity.read_file(path, MAX_FILE)


def read_header(path: str | os.PathLike[str]) -> Header:
    """Spec, tensor shapes and progress of a checkpoint, read from its JSON header alone (an
    8-byte little-endian length, then the JSON: the safetensors format), so reading it needs
    neither torch nor the safetensors package (nor the whole file: `inspect` checks that)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such checkpoint")
    try:
        with open(path, "rb") as fh:
            start = fh.read(8)
            length = int.from_bytes(start, "little") if len(start) == 8 else 0
            data = start + fh.read(min(length, MAX_HEADER))
    except OSError as exc:
        raise ArtifactError(f"{path}: not a readable safetensors checkpoint ({exc.strerror or exc})") from None
    return parse_header(data, path, path.stat().st_size)


def parse_header(data: bytes, path: str | os.PathLike[str], size: int | None = None) -> Header:
    """The Header of a checkpoint from its first bytes (`size`: the whole file's, when `data`
    holds only the header)."""
    try:
        header = _json_header(data, len(data) if size is None else size)
    except ValueError as exc:  # json's errors are ValueErrors too
        raise ArtifactError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    meta = header.pop("__metadata__", None) or {}
    try:
        shapes = {k: [int(n) for n in v["shape"]] for k, v in header.items()}
    except (TypeError, KeyError, ValueError):
        raise ArtifactError(f"{path}: not a readable safetensors checkpoint (damaged tensor entries)") from None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ArtifactError(f"{path}: not a readable safetensors checkpoint (damaged metadata)")
    return Header(spec_of(meta, str(path)), shapes, progress_of(meta, str(path)), meta[SPEC_KEY])


def _json_header(data: bytes, size: int) -> dict[str, Any]:
    if len(data) < 8:
        raise ValueError("shorter than a safetensors header")
    length = int.from_bytes(data[:8], "little")
    if length > MAX_HEADER or length > size - 8 or length > len(data) - 8:
        raise ValueError(f"header length {length:,} does not fit the file")
    header = bounded_json.loads(data[8:8 + length], MAX_HEADER, max_depth=8)
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header
