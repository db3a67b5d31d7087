"""int8 variant: onnxruntime's dynamic quantization of the fp32 graph (weights int8, the LSTM
as DynamicQuantizeLSTM), with its agreement to fp32 measured and recorded in its spec."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx

from mpx.runtime.backends import Backend, OnnxBackend
from mpx.runtime.contract import Outputs
from mpx.runtime.spec import ModelSpec

from . import onnx_graph
from .parity import lockstep_rollout

log = logging.getLogger(__name__)




def agreement(fp32: Backend, other: Backend, real: np.ndarray, rollout_steps: int = 256) -> dict[str, float]:
    """Top-1 pitch agreement and max step/duration difference over a real seed read in one
    pass, then over a greedy rollout chosen by fp32 (both sides get the same inputs).

    Time differences: the worst in seconds, and the mean relative to fp32's value (floored at
    50 ms, so a near-zero step does not blow the ratio up): a model predicting log-seconds errs in
    proportion to the time, and 0.2 s on a held 4 s note is not the error 0.2 s on a 0.1 s step is."""
    same, total = 0, 0
    worst = {"max_step_diff": 0.0, "max_duration_diff": 0.0}
    rel_sum = {"step": 0.0, "duration": 0.0}

    def compare(a: Outputs, b: Outputs) -> None:
        nonlocal same, total
        same += int((a.pitch_logits.argmax(-1) == b.pitch_logits.argmax(-1)).sum())
        total += a.pitch_logits.shape[0] * a.pitch_logits.shape[1]
        for name, x, y in (("step", a.step, b.step), ("duration", a.duration, b.duration)):
            gap = np.abs(x - y)
            worst[f"max_{name}_diff"] = max(worst[f"max_{name}_diff"], float(gap.max()))
            rel_sum[name] += float((gap / np.maximum(np.abs(x), 0.05)).sum())

    for a, b in lockstep_rollout(fp32, other, real, rollout_steps):
        compare(a, b)
    return {"top1_pitch_agreement": same / total, **worst,
            "mean_step_rel_diff": rel_sum["step"] / total,
            "mean_duration_rel_diff": rel_sum["duration"] / total, "positions": total}


def quantize_int8(fp32_path: Path, spec: ModelSpec, real: np.ndarray, target: Path) -> tuple[onnx.ModelProto, dict[str, float]]:
    """Quantize the (already validated) fp32 graph; return the int8 model and its agreement."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "int8.onnx"
        logging.disable(logging.WARNING)  # its advice to pre-process is for vision models
        try:
            quantize_dynamic(str(fp32_path), str(out), weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        measured = agreement(OnnxBackend(fp32_path), OnnxBackend(out), real)
        proto = onnx.load(str(out))
    artifact = {**spec.artifact, "quantization": "int8 dynamic (weights), onnxruntime",
                "agreement_with_fp32": measured}
    onnx_graph.set_spec(proto, spec.replace(artifact=artifact))
    log.info("%s: int8 agreement %s", target, measured)
    return proto, measured
