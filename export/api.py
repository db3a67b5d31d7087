"""`mpx export`: checkpoint -> validated artifacts. Each artifact is written to a temporary
file beside its target, checked against eager PyTorch, and renamed only when it passes."""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from mpx.runtime.artifacts import AOTI, ONNX, ONNX_INT8, PT2, SEED, TORCHSCRIPT, bundled_dir
from mpx.runtime.atomic import atomic_path
from mpx.runtime.backends import Backend, CompiledBackend, OnnxBackend, TorchScriptBackend
from mpx.runtime.midi import read_notes
from mpx.runtime.spec import ModelSpec
from mpx.runtime.versions import versions
from mpx.train import checkpoint
from mpx.train.eager import EagerBackend
from mpx.train.model import NoteLSTM

from . import onnx_graph, parity, pt2, quantize as quantization, torchscript
from .errors import ExportError
from .options import ExportOptions
from .parity import ParityReport

log = logging.getLogger(__name__)

TARGETS = {"torchscript": TORCHSCRIPT, "onnx": ONNX, "pt2": PT2, "aoti": AOTI}


@dataclasses.dataclass
class ExportReport:
    written: list[Path] = dataclasses.field(default_factory=list)
    parity: dict[str, ParityReport] = dataclasses.field(default_factory=dict)
    agreement: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)


def real_notes(length: int = 512) -> np.ndarray:
    """Real notes for the parity checks: the bundled seed performance."""
    return read_notes(bundled_dir() / SEED)[:length]


def _prepare_out_dir(out_dir: Path, options: ExportOptions) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{out_dir}: cannot create output directory ({exc.strerror or exc})") from None
    if not out_dir.is_dir():
        raise ExportError(f"{out_dir}: not a directory")
    names = [TARGETS[f] for f in options.formats] + ([ONNX_INT8] if options.quantize else [])
    existing = [str(out_dir / n) for n in names if (out_dir / n).exists()]
    if existing and not options.force:
        raise ExportError(f"{existing[0]}: exists; pass --force to replace it or choose another --out-dir")


def export_artifacts(checkpoint_path: str | Path, out_dir: str | Path = ".",
                     options: ExportOptions | None = None,
                     echo: Callable[[str], None] = log.info) -> ExportReport:
    options = options or ExportOptions()
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, options)
    model, spec = checkpoint.load_model(checkpoint_path)
    eager = EagerBackend(model, spec, Path(checkpoint_path))
    real = real_notes()
    stamped = spec.replace(versions={**spec.versions, **versions("torch", "onnx")})
    source = Path(checkpoint_path).name
    report = ExportReport()
    for fmt in options.formats:
        target = out_dir / TARGETS[fmt]
        artifact_spec = stamped.replace(artifact={"format": fmt, "source": source,
                                                  **({"opset": options.opset} if fmt == "onnx" else {})})
        # torch's pt2 writers insist on a .pt2 name, even for the temporary file
        with atomic_path(target, suffix=".tmp.pt2" if fmt in ("pt2", "aoti") else ".tmp") as tmp:
            candidate = _write(fmt, model, artifact_spec, tmp, options)
            report.parity[fmt] = parity.check(eager, candidate, real, options.atol, options.rtol, str(target))
            echo(f"parity {report.parity[fmt].describe()}: within {options.atol:g} + {options.rtol:g} x |value|")
        report.written.append(target)
        if fmt == "onnx" and options.quantize == "int8":
            report.written.append(_quantized(target, artifact_spec, real, out_dir / ONNX_INT8, report, echo))
    return report


def _write(fmt: str, model: NoteLSTM, spec: ModelSpec, path: Path, options: ExportOptions) -> Backend:
    """Write one artifact to `path` and open it as a backend for the parity check."""
    if fmt == "torchscript":
        torchscript.save(model, spec, path)
        return TorchScriptBackend(path)
    if fmt == "onnx":
        onnx_graph.save(onnx_graph.build(model, spec, options.opset), path)
        return OnnxBackend(path)
    (pt2.save_program if fmt == "pt2" else pt2.save_aoti)(model, spec, path)
    return CompiledBackend(path, fmt)


def _quantized(fp32: Path, spec: ModelSpec, real: np.ndarray, target: Path, report: ExportReport,
               echo: Callable[[str], None]) -> Path:
    proto, measured = quantization.quantize_int8(fp32, spec, real, target)
    with atomic_path(target) as tmp:
        onnx.save(proto, str(tmp))
    report.agreement["int8"] = measured
    echo("int8 vs fp32: likeliest bin agrees at " + ", ".join(
        f"{name} {measured[f'top1_{name}_agreement']:.1%}" for name in ("pitch", "step", "duration", "velocity"))
         + f" of positions; sampled notes identical {measured['sampled_note_agreement']:.1%}")
    return target
