"""One writer per exported format, named by the format registry (runtime/formats.py, `writer`):
each writes `model`, with `spec` inside, to `path` (a staged file: export/api.py renames it into
place once it passes parity)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mpx.runtime.spec import ModelSpec
from mpx.train.model import NoteLSTM

from . import onnx_graph, pt2 as pt2_export, torchscript as torchscript_export
from .options import ExportOptions

Echo = Callable[[str], None]


def torchscript(model: NoteLSTM, spec: ModelSpec, path: Path, options: ExportOptions, echo: Echo) -> None:
    torchscript_export.save(model, spec, path)


def onnx(model: NoteLSTM, spec: ModelSpec, path: Path, options: ExportOptions, echo: Echo) -> None:
    onnx_graph.save(onnx_graph.build(model, spec, options.opset), path)


def pt2(model: NoteLSTM, spec: ModelSpec, path: Path, options: ExportOptions, echo: Echo) -> None:
    pt2_export.save_program(model, spec, path)


def aoti(model: NoteLSTM, spec: ModelSpec, path: Path, options: ExportOptions, echo: Echo) -> None:
    echo(f"compiling {path.name} with AOTInductor (about a minute on a 2-core CPU)")
    pt2_export.save_aoti(model, spec, path)
