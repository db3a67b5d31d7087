"""TorchScript artifact: the model scripted (not traced: tracing freezes batch size and any
control flow), its spec in the archive's extra files, loadable by torch.jit.load anywhere."""
from __future__ import annotations

from pathlib import Path

import torch

from mpx.runtime.contract import TORCHSCRIPT_SPEC_FILE
from mpx.runtime.spec import ModelSpec
from mpx.train.model import NoteLSTM


def script(model: NoteLSTM) -> torch.jit.ScriptModule:
    """forward(notes, h0, c0, uniforms, temperature, top_p) -> (next_note, hn, cn, logits),
    plus zero_state(B)."""
    return torch.jit.script(model.eval())


def save(model: NoteLSTM, spec: ModelSpec, path: Path) -> None:
    scripted = script(model)
    torch.jit.save(scripted, str(path), _extra_files={TORCHSCRIPT_SPEC_FILE: spec.to_json(indent=2)})
