"""`mpx export`: checkpoint -> validated artifacts. Each artifact is written to a temporary
file beside its target, checked against eager PyTorch, and renamed only when it passes."""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch

from mpx.runtime.artifacts import ONNX, ONNX_INT8, TORCHSCRIPT, bundled_dir
from mpx.runtime.atomic import atomic_path
from mpx.runtime.backends import Backend, OnnxBackend, TorchScriptBackend
from mpx.runtime.errors import MpxError
from mpx.runtime.midi import read_notes
from mpx.runtime.spec import ModelSpec
from mpx.train import checkpoint
from mpx.train.eager import EagerBackend
from mpx.train.loop import versions

from . import onnx_graph, quantize as quantization, torchscript, validate
from .errors import ExportError
from .validate import ParityReport

log = logging.getLogger(__name__)

FORMATS = ("torchscript", "onnx", "all")
SEED_MIDI = "seed.mid"  # bundled real notes for parity checks


@dataclasses.dataclass
class ExportReport:
    written: list[Path] = dataclasses.field(default_factory=list)
    parity: dict[str, ParityReport] = dataclasses.field(default_factory=dict)
    agreement: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)


def real_notes(spec: ModelSpec, length: int = 512) -> np.ndarray:
    """Real notes for the parity checks: the bundled seed performance."""
    return read_notes(bundled_dir() / SEED_MIDI)[:length]


def _prepare_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{out_dir}: cannot create output directory ({exc.strerror or exc})") from None
    if not out_dir.is_dir():
        raise ExportError(f"{out_dir}: not a directory")


def export_artifacts(checkpoint_path: str | Path, format: str = "all", out_dir: str | Path = ".",
                     *, opset: int = onnx_graph.DEFAULT_OPSET, atol: float = 1e-5, rtol: float = 1e-5,
                     quantize: str | None = None,
                     echo: Callable[[str], None] = log.info) -> ExportReport:
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if quantize is not None and quantize not in quantization.QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantize!r}; choose {', '.join(quantization.QUANTIZATIONS)}")
    if quantize and format == "torchscript":
        raise ExportError("--quantize applies to the ONNX artifact; use --format onnx or all")
    if not (atol > 0):
        raise ExportError(f"--atol must be > 0, got {atol}")
    if not (rtol >= 0):
        raise ExportError(f"--rtol must be >= 0, got {rtol}")
    onnx_graph.check_opset(opset)
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir)

    model, spec = checkpoint.load_model(checkpoint_path)
    eager = EagerBackend(model, spec, Path(checkpoint_path))
    real = real_notes(spec)
    stamp = {**spec.versions, **versions(), "onnx": onnx.__version__}
    report = ExportReport()
    if format in ("torchscript", "all"):
        target = out_dir / TORCHSCRIPT
        ts_spec = spec.replace(versions=stamp, artifact={"format": "torchscript", "source": Path(checkpoint_path).name})
        with atomic_path(target) as tmp:
            torchscript.save(model, ts_spec, tmp)
            report.parity["torchscript"] = _validated(eager, TorchScriptBackend(tmp), real, atol, rtol, target, echo)
        report.written.append(target)
    if format in ("onnx", "all"):
        target = out_dir / ONNX
        onnx_spec = spec.replace(versions=stamp, artifact={"format": "onnx", "opset": opset,
                                                           "source": Path(checkpoint_path).name})
        with atomic_path(target) as tmp:
            onnx_graph.save(onnx_graph.build(model, onnx_spec, opset), tmp)
            report.parity["onnx"] = _validated(eager, OnnxBackend(tmp), real, atol, rtol, target, echo)
        report.written.append(target)
        if quantize == "int8":
            int8_target = out_dir / ONNX_INT8
            proto, measured = quantization.quantize_int8(target, onnx_spec, real, int8_target)
            with atomic_path(int8_target) as tmp:
                onnx.save(proto, str(tmp))
            report.agreement["int8"] = measured
            echo(f"int8 vs fp32: top-1 pitch agreement {measured['top1_pitch_agreement']:.4f}, "
                 f"step diff max {measured['max_step_diff']:.3f} s / mean {measured['mean_step_rel_diff']:.1%}, "
                 f"duration diff max {measured['max_duration_diff']:.3f} s / mean {measured['mean_duration_rel_diff']:.1%}")
            report.written.append(int8_target)
    return report


def _validated(eager: Backend, candidate: Backend, real: np.ndarray, atol: float, rtol: float,
               target: Path, echo: Callable[[str], None]) -> ParityReport:
    parity = validate.check(eager, candidate, real, atol, target=str(target), rtol=rtol)
    echo(f"parity {parity.describe()}: within {atol:g} + {rtol:g} x |value|")
    return parity
