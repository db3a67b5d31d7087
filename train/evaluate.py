"""`mpx eval`: how well a model predicts the next note, in the two ways it is used.

window:   every seq_len-note window from a zero state predicts the note after it (the
          tutorial's setting, and what the window generation mode does);
stateful: each file from a zero state predicts every next note, the state carried through
          the whole file (what the stateful generation mode does).
Metrics per predicted note: pitch cross-entropy (nats), top-1 pitch accuracy, and the mean
absolute error of step and duration in seconds (predictions clipped at 0, as generation does).
Works on any backend: checkpoint (eager), TorchScript or ONNX.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mpx.runtime.backends import Backend, zero_state
from mpx.runtime.contract import Outputs
from mpx.runtime.errors import MpxError, OptionsError

if TYPE_CHECKING:
    from .corpus import Corpus

MODES = ("window", "stateful")


class _Totals:
    def __init__(self) -> None:
        self.n = 0
        self.ce = self.correct = self.step_ae = self.duration_ae = 0.0

    def add(self, logits: np.ndarray, step: np.ndarray, duration: np.ndarray, target: np.ndarray) -> None:
        """logits [N, 128], step/duration [N], target notes [N, 3]."""
        logits = logits.astype(np.float64)
        top = logits.max(axis=-1, keepdims=True)
        log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=-1))
        pitch = target[:, 0].astype(np.int64)
        self.ce += float((log_z - logits[np.arange(len(pitch)), pitch]).sum())
        self.correct += float((logits.argmax(axis=-1) == pitch).sum())
        self.step_ae += float(np.abs(np.maximum(step, 0) - target[:, 1]).sum())
        self.duration_ae += float(np.abs(np.maximum(duration, 0) - target[:, 2]).sum())
        self.n += len(pitch)

    def result(self) -> dict[str, float]:
        n = max(self.n, 1)
        return {"pitch_ce": self.ce / n, "top1": self.correct / n, "step_mae": self.step_ae / n,
                "duration_mae": self.duration_ae / n, "predictions": self.n}


def windows(notes: Sequence[np.ndarray], width: int, batch: int, stride: int
             ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of (windows [B, width, 3], the note after each [B, 3]) across all files."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    size = 0
    for seq in notes:
        if len(seq) <= width:
            continue
        # every window of the file as a view [n, width, 3]: copied only batch by batch
        x = np.lib.stride_tricks.sliding_window_view(seq[:-1], width, axis=0)[::stride].transpose(0, 2, 1)
        y = seq[width:][::stride]
        while len(x):
            take = min(batch - size, len(x))
            xs.append(x[:take])
            ys.append(y[:take])
            x, y, size = x[take:], y[take:], size + take
            if size == batch:
                yield np.concatenate(xs), np.concatenate(ys)
                xs, ys, size = [], [], 0
    if size:
        yield np.concatenate(xs), np.concatenate(ys)


def evaluate_window(backend: Backend, notes: Sequence[np.ndarray], batch: int = 1024,
                    stride: int = 1) -> dict[str, float]:
    totals = _Totals()
    for x, y in windows(notes, backend.spec.seq_len, batch, stride):
        out = backend.step(np.ascontiguousarray(x, np.float32), *zero_state(backend.spec, len(x)))
        totals.add(out.pitch_logits[:, -1], out.step[:, -1], out.duration[:, -1], y)
    return totals.result()


def stateful_outputs(backend: Backend, notes: Sequence[np.ndarray]) -> Iterator[tuple[np.ndarray, Outputs]]:
    """The one pass over each file from a zero state: (file's notes, outputs at every position
    but the last, each predicting the note after it). Files shorter than 2 notes are skipped."""
    for seq in notes:
        if len(seq) >= 2:
            yield seq, backend.step(np.ascontiguousarray(seq[None, :-1], np.float32), *zero_state(backend.spec, 1))


def evaluate_stateful(backend: Backend, notes: Sequence[np.ndarray]) -> dict[str, float]:
    totals = _Totals()
    for seq, out in stateful_outputs(backend, notes):
        totals.add(out.pitch_logits[0], out.step[0], out.duration[0], seq[1:])
    return totals.result()


def evaluate_model(backend: Backend, notes: Sequence[np.ndarray],
                   modes: Sequence[str] = MODES, stride: int = 1) -> dict[str, Any]:
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise OptionsError(f"--mode must be one of {', '.join(MODES)} (or both), got {', '.join(unknown) or 'none'}")
    report: dict[str, Any] = {"backend": backend.name, "seq_len": backend.spec.seq_len}
    if "window" in modes:
        report["window"] = evaluate_window(backend, notes, stride=stride)
    if "stateful" in modes:
        report["stateful"] = evaluate_stateful(backend, notes)
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report.get('model', '')} on {report.get('files', '?')} files "
             f"({report.get('split', '')} split), backend {report['backend']}",
             f"{'mode':<9} {'pitch CE (nats)':>15} {'top-1':>7} {'step MAE (s)':>13} "
             f"{'duration MAE (s)':>17} {'predictions':>12}"]
    for mode in MODES:
        if mode in report:
            r = report[mode]
            lines.append(f"{mode:<9} {r['pitch_ce']:>15.4f} {r['top1']:>7.4f} {r['step_mae']:>13.4f} "
                         f"{r['duration_mae']:>17.4f} {r['predictions']:>12}")
    return "\n".join(lines)


def evaluate_split(backend: Backend, corpus: "Corpus", split: str = "test",
                   modes: Sequence[str] = MODES) -> dict[str, Any]:
    """`mpx eval`: score one split of a corpus (or "all" of it) in the given modes."""
    chosen = corpus.select(split)
    if not chosen.files:
        raise MpxError(f"the {split} split of this data is empty (it has {len(corpus.files)} files: "
                       "try --split all)")
    report = evaluate_model(backend, chosen.notes, modes)
    report["split"], report["files"] = split, len(chosen.files)
    return report
