"""TorchScript artifact: the model scripted (not traced: tracing freezes batch size and any
control flow), its spec in the archive's extra files, loadable by torch.jit.load anywhere."""
from __future__ import annotations

import io
from pathlib import Path

import torch

from mpx.runtime import integrity
from mpx.runtime.contract import TORCHSCRIPT_SPEC_FILE
from mpx.runtime.spec import ModelSpec
from mpx.train.model import NoteLSTM


def script(model: NoteLSTM) -> torch.jit.ScriptModule:
    """forward(notes, h0, c0, uniforms, temperature, top_p) -> (next_note, hn, cn, logits),
    plus zero_state(B)."""
    return torch.jit.script(model.eval())


def to_bytes(model: NoteLSTM, spec: ModelSpec) -> bytes:
    """The archive in memory. torch.jit.save writing to a file aborts the whole process when the
    disk fills (c10::Error "unexpected pos" thrown where it cannot be caught, exit 134) and
    leaves a partial file; in memory nothing can fail that way, and the caller writes the bytes
    with an ordinary, catchable OSError. Sealed with its checksum (runtime/integrity.py)."""
    buffer = io.BytesIO()
    text = spec.to_json(indent=2)
    torch.jit.save(script(model), buffer, _extra_files={TORCHSCRIPT_SPEC_FILE: text})
    return integrity.seal_archive(buffer.getvalue(), text)


def save(model: NoteLSTM, spec: ModelSpec, path: Path) -> None:
    data = to_bytes(model, spec)
    with open(path, "wb") as fh:  # a staged file (export/api.py): renamed into place after parity
        fh.write(data)
