"""The checkpoint file format, owned here and used by both sides: the training code writes and
loads checkpoints with torch (mpx.train.checkpoint), `mpx info` reads their header without it.

A checkpoint is one safetensors file: tensors `model.*` (the model's state dict; a training
checkpoint adds `optim.*`, `lanes.*` and `rng.*`) and a str->str metadata map holding the spec
(`mpx_spec`) and, for a training checkpoint, its progress (`mpx_progress`). Nothing in it is
executable: loading never runs pickled code.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from .contract import SPEC_KEY
from .errors import ArtifactError, MpxError, SpecError
from .spec import ModelSpec

MODEL_PREFIX = "model."
PROGRESS_KEY = "mpx_progress"


@dataclasses.dataclass(frozen=True)
class Header:
    spec: ModelSpec
    shapes: dict[str, list[int]]   # every tensor's shape, by key
    progress: dict[str, Any]       # {} for a model-only checkpoint

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
        progress = json.loads(metadata[PROGRESS_KEY])
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


def read_header(path: str | os.PathLike[str]) -> Header:
    """Spec, tensor shapes and progress of a checkpoint, read without torch."""
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:
        raise MpxError("reading a checkpoint needs safetensors: pip install 'mpx[train]'") from None
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such checkpoint")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            shapes = {k: list(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    return Header(spec_of(meta, str(path)), shapes, progress_of(meta, str(path)))
