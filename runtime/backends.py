"""Backends: one interface over every way to run the graph (the README's graph contract).

    backend.step(notes [B, T, 3], h [L, B, H], c [L, B, H])
        -> (pitch_logits [B, T, 128], step [B, T], duration [B, T], hn, cn)   all numpy float32

The ONNX backend needs onnxruntime only. The TorchScript backend imports torch when it is
created, never at module import. The eager backend (a checkpoint run by the training code)
lives in mpx.train.eager, because the runtime never imports the training code.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import ArtifactError, MpxError
from .spec import INPUTS, OUTPUTS, SPEC_KEY, ModelSpec

log = logging.getLogger(__name__)

Outputs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
BACKENDS = ("onnx", "torchscript", "eager")
SUFFIX_BACKEND = {".onnx": "onnx", ".pt": "torchscript", ".safetensors": "eager"}
TS_SPEC_FILE = "mpx_spec.json"  # TorchScript extra file holding the spec


class Backend(Protocol):
    name: str
    spec: ModelSpec
    path: Path

    def step(self, notes: np.ndarray, h: np.ndarray, c: np.ndarray) -> Outputs: ...


def zero_state(spec: ModelSpec, batch: int) -> tuple[np.ndarray, np.ndarray]:
    shape = (spec.layers, batch, spec.hidden)
    return np.zeros(shape, np.float32), np.zeros(shape, np.float32)


def backend_for(path: str | os.PathLike[str]) -> str:
    """The backend a file's suffix selects; ArtifactError for an unknown suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_BACKEND:
        raise ArtifactError(f"{path}: unknown model file type {suffix!r}; expected one of "
                            f"{', '.join(SUFFIX_BACKEND)}")
    return SUFFIX_BACKEND[suffix]


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise ArtifactError(f"{path}: no such model file")


def _ort_errors() -> tuple[type[BaseException], ...]:
    from onnxruntime.capi import onnxruntime_pybind11_state as state
    names = ("Fail", "InvalidArgument", "InvalidProtobuf", "NoSuchFile", "InvalidGraph",
             "RuntimeException", "NotImplemented")
    return tuple(getattr(state, n) for n in names if hasattr(state, n)) + (RuntimeError,)


# Intra-op threads of the ONNX backend, chosen by measurement (benchmarks/bench_generate.py
# --ort-sweep, bundled model, this 2-core CPU, idle): 2 threads give 18.4k notes/s one stream
# and 146k with 64 streams, against 12.6k and 116k on 1. When other processes keep the cores
# busy, a second thread has no core to run on; `--threads 1` is the choice there.
DEFAULT_THREADS = min(2, os.cpu_count() or 1)


def onnx_session_options(threads: int = DEFAULT_THREADS):  # -> onnxruntime.SessionOptions
    """Session options chosen by measurement; the graph optimisation level made no difference
    (basic and all within noise), so the full set stays on."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only; shape warnings are caught by the tests instead
    return opts


class OnnxBackend:
    name = "onnx"

    def __init__(self, path: str | os.PathLike[str], threads: int = DEFAULT_THREADS) -> None:
        import onnxruntime as ort
        self.path = Path(path)
        _require_file(self.path)
        try:
            self.session = ort.InferenceSession(str(self.path), onnx_session_options(threads),
                                                providers=["CPUExecutionProvider"])
        except _ort_errors() as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(f"{self.path}: not a loadable ONNX model ({first[:200]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if SPEC_KEY not in meta:
            raise ArtifactError(f"{self.path}: ONNX model has no mpx spec in its metadata; "
                                "export it with `mpx export`")
        self.spec = ModelSpec.from_json(meta[SPEC_KEY], source=str(self.path))
        names_in = [i.name for i in self.session.get_inputs()]
        names_out = [o.name for o in self.session.get_outputs()]
        self.output_names = names_out
        if names_in != list(INPUTS) or names_out != list(OUTPUTS):
            raise ArtifactError(f"{self.path}: graph names {names_in} -> {names_out} differ "
                                f"from the contract {list(INPUTS)} -> {list(OUTPUTS)}")

    def step(self, notes: np.ndarray, h: np.ndarray, c: np.ndarray) -> Outputs:
        # the output names passed in: with None, onnxruntime rebuilds the list on every call
        return tuple(self.session.run(self.output_names, {"notes": notes, "h0": h, "c0": c}))  # type: ignore[return-value]


class TorchScriptBackend:
    name = "torchscript"

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        try:
            import torch
        except ImportError:
            raise MpxError("the torchscript backend needs torch: pip install 'mpx[train]' "
                           "(or use --backend onnx)") from None
        self.path = Path(path)
        _require_file(self.path)
        self._torch = torch
        if threads is not None:
            torch.set_num_threads(threads)
        extra = {TS_SPEC_FILE: ""}
        try:
            self.module = torch.jit.load(str(self.path), map_location="cpu", _extra_files=extra)
        except (RuntimeError, ValueError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(f"{self.path}: not a loadable TorchScript archive ({first[:200]})") from None
        if not extra[TS_SPEC_FILE]:
            raise ArtifactError(f"{self.path}: TorchScript archive has no {TS_SPEC_FILE}; "
                                "export it with `mpx export`")
        self.spec = ModelSpec.from_json(extra[TS_SPEC_FILE], source=str(self.path))
        self.module.eval()

    def step(self, notes: np.ndarray, h: np.ndarray, c: np.ndarray) -> Outputs:
        return torch_step(self._torch, self.module, notes, h, c)


def torch_step(torch, module, notes: np.ndarray, h: np.ndarray, c: np.ndarray) -> Outputs:  # type: ignore[no-untyped-def]
    """One graph call of a torch module (scripted or eager) on numpy arrays.

    oneDNN is switched off for the call: its LSTM costs ~2.5x more than torch's own kernels
    for the one-note steps of generation (benchmarks/bench_generate.py), and the C++ example
    does the same, so both sides run the same kernels and agree bit for bit.
    """
    onednn = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        with torch.inference_mode():
            out = module(torch.from_numpy(notes), torch.from_numpy(h), torch.from_numpy(c))
    finally:
        torch.backends.mkldnn.enabled = onednn
    return tuple(t.numpy() for t in out)  # type: ignore[return-value]


def open_backend(path: str | os.PathLike[str], backend: str | None = None,
                 threads: int | None = None) -> Backend:
    """Open an ONNX or TorchScript artifact. `backend` overrides the choice by suffix."""
    chosen = backend or backend_for(path)
    if chosen == "onnx":
        return OnnxBackend(path, threads=threads or DEFAULT_THREADS)
    if chosen == "torchscript":
        return TorchScriptBackend(path, threads=threads)
    if chosen == "eager":
        raise MpxError("the eager backend runs a checkpoint with the training code: use "
                       "mpx.train.eager.load(checkpoint) (the CLI does this for --backend eager)")
    raise MpxError(f"unknown backend {chosen!r}; choose one of {', '.join(BACKENDS)}")
