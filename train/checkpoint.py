"""Checkpoints: weights + spec in one safetensors file, written atomically, loaded with torch.

The file format (keys, metadata names) belongs to mpx.runtime.checkpoints, which `mpx info`
also reads; this module writes and loads it with torch and rebuilds the model from the spec.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as deserialise, save as serialise

from mpx.runtime import checkpoints as layout, integrity
from mpx.runtime.atomic import write_bytes
from mpx.runtime.errors import ArtifactError
from mpx.runtime.spec import ModelSpec

from .model import NoteLSTM

log = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    spec: ModelSpec
    state_dict: dict[str, torch.Tensor]
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # optimizer, lane states, rng
    progress: dict[str, Any] = field(default_factory=dict)


def save(path: str | os.PathLike[str], spec: ModelSpec, state_dict: dict[str, torch.Tensor],
         extra: dict[str, torch.Tensor] | None = None, progress: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically: a crash mid-write leaves the previous file intact."""
    tensors = {layout.MODEL_PREFIX + k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    for key, value in (extra or {}).items():
        tensors[key] = value.detach().cpu().contiguous()
    # serialised in memory, written by mpx: safetensors' own file writer reports a full disk as
    # a SafetensorError, which only the bytes' OSError turns into one line (runtime/atomic.py);
    # sealed with its checksum (runtime/integrity.py), checked whenever it is loaded
    data = serialise(tensors, metadata=layout.metadata(progress, spec))
    return write_bytes(path, layout.seal(data, str(path)))


def load(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint; ArtifactError naming the file when it is missing, torn, foreign or
    damaged (its checksum, recorded when it was written, is checked on the bytes the tensors
    are then read from)."""
    path = Path(path)
    data = layout.read_whole(path)
    header, status = layout.verify(data, path)
    if status == integrity.NOT_RECORDED:
        log.warning("%s: carries no checksum (written before mpx recorded one): damage to it cannot "
                    "be detected", path)
    try:
        tensors = deserialise(data)
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    prefix = layout.MODEL_PREFIX
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    extra = {k: v for k, v in tensors.items() if not k.startswith(prefix)}
    return Checkpoint(spec=header.spec, state_dict=state, extra=extra, progress=header.progress)


def build_model(checkpoint: Checkpoint, source: str = "checkpoint") -> NoteLSTM:
    """The model rebuilt from the spec's config, with the checkpoint's weights, in eval mode."""
    model = NoteLSTM(checkpoint.spec.config)
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
        if tensor.dtype != expected[name].dtype or not torch.isfinite(tensor).all():
            raise ArtifactError(f"{source}: weight {name} is damaged ({tensor.dtype}, or not finite)")
    model.load_state_dict(checkpoint.state_dict)
    return model.eval()


def load_model(path: str | os.PathLike[str]) -> tuple[NoteLSTM, ModelSpec]:
    checkpoint = load(path)
    return build_model(checkpoint, str(path)), checkpoint.spec
