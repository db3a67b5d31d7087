"""Checkpoints: weights + spec in one safetensors file, written atomically.

safetensors holds tensors and a str->str metadata map, nothing executable, so loading a
checkpoint never runs pickled code. Keys: `model.*` the model's state dict; a training
checkpoint (last.safetensors) adds `optim.*` and `lanes.*`, and its progress in metadata.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from mpx.runtime.atomic import atomic_path
from mpx.runtime.errors import ArtifactError, SpecError
from mpx.runtime.spec import SPEC_KEY, ModelSpec

from .model import NoteLSTM

log = logging.getLogger(__name__)

PROGRESS_KEY = "mpx_progress"
MODEL_PREFIX = "model."


@dataclass
class Checkpoint:
    spec: ModelSpec
    state_dict: dict[str, torch.Tensor]
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # optimizer, lane states
    progress: dict[str, Any] = field(default_factory=dict)


def save(path: str | os.PathLike[str], spec: ModelSpec, state_dict: dict[str, torch.Tensor],
         extra: dict[str, torch.Tensor] | None = None, progress: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically: a crash mid-write leaves the previous file intact."""
    tensors = {MODEL_PREFIX + k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    for key, value in (extra or {}).items():
        tensors[key] = value.detach().cpu().contiguous()
    metadata = {SPEC_KEY: spec.to_json()}
    if progress is not None:
        metadata[PROGRESS_KEY] = json.dumps(progress)
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def load(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint; ArtifactError naming the file when it is missing, torn or foreign."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such checkpoint")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise ArtifactError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    if SPEC_KEY not in metadata:
        raise ArtifactError(f"{path}: safetensors file carries no mpx spec (not an mpx checkpoint)")
    try:
        spec = ModelSpec.from_json(metadata[SPEC_KEY], source=str(path))
    except SpecError as exc:
        raise ArtifactError(str(exc)) from None
    state = {k[len(MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(MODEL_PREFIX)}
    extra = {k: v for k, v in tensors.items() if not k.startswith(MODEL_PREFIX)}
    progress = json.loads(metadata[PROGRESS_KEY]) if PROGRESS_KEY in metadata else {}
    return Checkpoint(spec=spec, state_dict=state, extra=extra, progress=progress)


def build_model(checkpoint: Checkpoint, source: str = "checkpoint") -> NoteLSTM:
    """The model rebuilt from the spec's config, with the checkpoint's weights, in eval mode."""
    model = NoteLSTM(**checkpoint.spec.config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(checkpoint.state_dict))
    unexpected = sorted(set(checkpoint.state_dict) - set(expected))
    if missing or unexpected:
        raise ArtifactError(f"{source}: weights do not match the model in its spec "
                            f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, tensor in checkpoint.state_dict.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ArtifactError(f"{source}: weight {name} has shape {list(tensor.shape)}, the "
                                f"spec's model needs {list(expected[name].shape)}")
    model.load_state_dict(checkpoint.state_dict)
    return model.eval()


def load_model(path: str | os.PathLike[str]) -> tuple[NoteLSTM, ModelSpec]:
    checkpoint = load(path)
    return build_model(checkpoint, str(path)), checkpoint.spec
