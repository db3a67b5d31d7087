"""`mpx export`: checkpoint -> validated artifacts. The artifacts are written into a staging
folder beside their targets, each checked against eager PyTorch there, and renamed into place
together only when every one passes."""
from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mpx.runtime import formats
from mpx.runtime.artifacts import ONNX_INT8, SEED, bundled_dir
from mpx.runtime.atomic import atomic_set, ensure_writable
from mpx.runtime.backends import Backend
from mpx.runtime.info import sha256
from mpx.runtime.midi import read_notes
from mpx.runtime.spec import ModelSpec
from mpx.runtime.versions import versions
from mpx.train import checkpoint
from mpx.train.eager import EagerBackend
from mpx.train.model import NoteLSTM

from . import onnx_graph, parity, quantize as quantization, targets, writers
from .errors import ExportError
from .options import ExportOptions
from .parity import ParityReport

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ExportReport:
    written: list[Path] = dataclasses.field(default_factory=list)
    parity: dict[str, ParityReport] = dataclasses.field(default_factory=dict)
    agreement: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)


def real_notes(length: int = 512) -> np.ndarray:
    """Real notes for the parity checks: the bundled seed performance."""
    return read_notes(bundled_dir() / SEED)[:length]


def _prepare_out_dir(checkpoint_path: str | Path, out_dir: Path, options: ExportOptions) -> targets.Targets:
    """The artifacts this export writes (and the earlier set's it removes), checked before any
    work (export/targets.py); the folder made."""
    planned = targets.plan(checkpoint_path, out_dir, options)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{out_dir}: cannot create output directory ({exc.strerror or exc})") from None
    ensure_writable(planned.write[0])
    return planned


def export_artifacts(checkpoint_path: str | Path, out_dir: str | Path = ".",
                     options: ExportOptions | None = None,
                     echo: Callable[[str], None] = log.info,
                     progress: Callable[[str, int, int], None] | None = None) -> ExportReport:
    """Write the artifacts as one set: each is written into a staging folder and checked
    against eager there; only when all pass are they renamed into `out_dir` together, so an
    export that fails or is killed leaves the previous set whole (runtime/atomic.py).
    `progress(step, done, total)` follows each parity check (step "parity FORMAT")."""
    options = options or ExportOptions()
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    planned = _prepare_out_dir(checkpoint_path, out_dir, options)
    try:
        report = _export(checkpoint_path, out_dir, planned.write, options, echo, progress)
    except BaseException:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a failed export leaves no empty folder of its own making
        raise
    for path in planned.stale:  # the new set is in place: no artifact of other weights beside it
        path.unlink(missing_ok=True)
        echo(f"removed {path} (an earlier export of other weights)")
    return report


def _export(checkpoint_path: str | Path, out_dir: Path, targets: list[Path], options: ExportOptions,
            echo: Callable[[str], None], progress: Callable[[str, int, int], None] | None) -> ExportReport:
    model, spec = checkpoint.load_model(checkpoint_path)
    eager = EagerBackend(model, spec, Path(checkpoint_path))
    real = real_notes()
    stamped = spec.replace(versions={**spec.versions, **versions("torch", "onnx")})
    source = {"source": Path(checkpoint_path).name, "source_sha256": sha256(Path(checkpoint_path))}
    report = ExportReport()
    with atomic_set(targets, replace=options.force) as staged:  # the staged files keep their names: torch's pt2 writers want .pt2
        for fmt in options.formats:
            target = out_dir / formats.get(fmt).filename
            artifact_spec = stamped.replace(artifact={"format": fmt, **source,
                                                      **({"opset": options.opset} if fmt == "onnx" else {})})
            candidate = _write(formats.get(fmt), model, artifact_spec, staged[target], options, echo)
            step = functools.partial(progress, f"parity {fmt}") if progress else None
            report.parity[fmt] = parity.check(eager, candidate, real, options.atol, options.rtol, str(target),
                                              progress=step)
            echo(f"parity {report.parity[fmt].describe()}: within {options.atol:g} + {options.rtol:g} x |value|")
            if fmt == "onnx" and options.quantize == "int8":
                _quantized(staged[target], artifact_spec, real, staged[out_dir / ONNX_INT8], report, echo)
    report.written = targets
    return report


def _write(fmt: formats.Format, model: NoteLSTM, spec: ModelSpec, path: Path, options: ExportOptions,
           echo: Callable[[str], None]) -> Backend:
    """Write one artifact to `path` with its format's writer; open it for the parity check."""
    getattr(writers, fmt.writer or "")(model, spec, path, options, echo)
    return fmt.open(path)


def _quantized(fp32: Path, spec: ModelSpec, real: np.ndarray, target: Path, report: ExportReport,
               echo: Callable[[str], None]) -> Path:
    proto, measured = quantization.quantize_int8(fp32, spec, real, target)
    onnx_graph.save(proto, target)
    report.agreement["int8"] = measured
    echo("int8 vs fp32: likeliest bin agrees at " + ", ".join(
        f"{name} {measured[f'top1_{name}_agreement']:.1%}" for name in ("pitch", "step", "duration", "velocity"))
         + f" of positions; sampled notes identical {measured['sampled_note_agreement']:.1%}")
    return target
