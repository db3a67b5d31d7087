"""Backends: one interface over every way to run the graph (runtime/contract.py).

    backend.run(notes [B, T, 4], h0, c0 [L, B, H], uniforms [B, 8], temperature [B, 4], top_p [B, 4],
                controls [B, C], given [B, 4])
        -> Outputs(next_note [B, 4], hn, cn, logits [B, T, 4, 128])      numpy float32

`run` checks its inputs (one line naming what is wrong); the Generator, which builds valid
inputs itself, calls `call`, the same without the checks (the per-note hot path).

Which backend opens which file is the format registry's (runtime/formats.py, `open_backend`).
The ONNX backend needs onnxruntime only. The TorchScript and compiled backends import torch when
they are created, never at module import. The eager backend (a checkpoint run by the training
code) lives in mpx.train and is found by the registry as a plugin.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import controls as control_rules, notes as note_rules
from .contract import (FEATURES, INPUTS, OUTPUTS, PT2_SPEC_FILE, SPEC_KEY, TIME_AXIS_KEY,
                       TORCHSCRIPT_SPEC_FILE, Outputs, shape)
from .errors import ArtifactError, MpxError, OptionsError, missing_extra
from .spec import ModelSpec, Sampling

log = logging.getLogger(__name__)


class Backend(Protocol):
    name: str
    spec: ModelSpec
    path: Path

    def call(self, notes: np.ndarray, h0: np.ndarray, c0: np.ndarray, uniforms: np.ndarray,
             temperature: np.ndarray, top_p: np.ndarray, controls: np.ndarray, given: np.ndarray) -> Outputs: ...

    def run(self, notes: np.ndarray, h0: np.ndarray, c0: np.ndarray, uniforms: np.ndarray,
            temperature: np.ndarray, top_p: np.ndarray, controls: np.ndarray, given: np.ndarray) -> Outputs: ...


class Checked:
    """`run` = the inputs checked against the contract, then `call`."""

    spec: ModelSpec

    def call(self, notes: np.ndarray, h0: np.ndarray, c0: np.ndarray, uniforms: np.ndarray,
             temperature: np.ndarray, top_p: np.ndarray, controls: np.ndarray, given: np.ndarray) -> Outputs:
        raise NotImplementedError

    def run(self, notes: np.ndarray, h0: np.ndarray, c0: np.ndarray, uniforms: np.ndarray,
            temperature: np.ndarray, top_p: np.ndarray, controls: np.ndarray, given: np.ndarray) -> Outputs:
        return self.call(*check_inputs(self.spec, notes, h0, c0, uniforms, temperature, top_p, controls, given))


def zero_state(spec: ModelSpec, batch: int) -> tuple[np.ndarray, np.ndarray]:
    shape = (spec.layers, batch, spec.hidden)
    return np.zeros(shape, np.float32), np.zeros(shape, np.float32)


def check_inputs(spec: ModelSpec, notes: np.ndarray, h0: np.ndarray, c0: np.ndarray,
                 uniforms: np.ndarray, temperature: np.ndarray, top_p: np.ndarray, controls: np.ndarray,
                 given: np.ndarray) -> tuple[np.ndarray, ...]:
    """The graph's inputs as float32 arrays of the contract's shapes; OptionsError otherwise."""
    arrays = {name: np.ascontiguousarray(value, np.float32) for name, value in
              zip(INPUTS, (notes, h0, c0, uniforms, temperature, top_p, controls, given))}
    if arrays["notes"].ndim != 3 or arrays["notes"].shape[0] < 1 or arrays["notes"].shape[1] < 1:
        raise OptionsError(f"notes must have shape [B, T, {len(FEATURES)}] with B, T >= 1, got {list(arrays['notes'].shape)}")
    sizes = {"batch": arrays["notes"].shape[0], "time": arrays["notes"].shape[1],
             "layers": spec.layers, "hidden": spec.hidden}
    for name, array in arrays.items():
        expected = shape(INPUTS[name], sizes)
        if list(array.shape) != expected:
            raise OptionsError(f"{name} must have shape {expected}, got {list(array.shape)}")
        if not np.isfinite(array).all():
            raise OptionsError(f"{name} holds NaN or infinite values")
    u = arrays["uniforms"]
    if u.min() < 0 or u.max() >= 1:
        raise OptionsError(f"uniforms must lie in [0, 1), got values in [{u.min():g}, {u.max():g}]")
    for t, p in zip(arrays["temperature"], arrays["top_p"]):  # the ranges, checked once
        Sampling(tuple(map(float, t)), tuple(map(float, p)))
    control_rules.check(arrays["controls"])
    note_rules.check_given(arrays["given"])
    return tuple(arrays.values())


def require_file(path: Path) -> None:
    if not path.is_file():
        raise ArtifactError(f"{path}: no such model file")


_LSTM_HH = re.compile(r"(?:^|\.)weight_hh_l(\d+)$")  # nn.LSTM's recurrent weight of layer k: [4H, H]


def lstm_sizes(shapes: Mapping[str, Sequence[int]]) -> tuple[int, int] | None:
    """(layers, hidden) of the LSTM among named parameter shapes; None when there is none."""
    hidden = {int(m.group(1)): int(shape[1]) for name, shape in shapes.items()
              if (m := _LSTM_HH.search(name)) and len(shape) == 2}
    return (len(hidden), hidden[0]) if hidden and 0 in hidden else None


def check_sizes(spec: ModelSpec, found: tuple[object, object] | None, source: object, where: str) -> None:
    """Refuse a file whose spec and graph disagree on the LSTM's size (a spec edited or swapped
    after export): it would fail on its first call, or feed a state of the wrong shape.
    `where` names what was measured: "graph", "module", "weights"."""
    if found is None:
        raise ArtifactError(f"{source}: found no LSTM of fixed size in its {where}; not an mpx model")
    layers, hidden = found
    if (layers, hidden) != (spec.layers, spec.hidden):
        raise ArtifactError(f"{source}: its spec says {spec.layers} LSTM layer(s) of hidden size "
                            f"{spec.hidden}, its {where} {layers} of {hidden}; the file is "
                            "damaged or its spec was altered")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


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


class OnnxBackend(Checked):
    name = "onnx"

    def __init__(self, path: str | os.PathLike[str], threads: int = DEFAULT_THREADS) -> None:
        import onnxruntime as ort
        self.path = Path(path)
        require_file(self.path)
        try:
            session = ort.InferenceSession(str(self.path), onnx_session_options(threads),
                                           providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own error types vary by version and build
            raise ArtifactError(f"{self.path}: not a loadable ONNX model ({_first_line(exc)})") from None
        try:
            self._check(session)
        except MpxError as exc:
            refused = exc.with_traceback(None)
        else:
            self.session = session
            return
        # the session (and its threads) goes now, not with whatever keeps the traceback: destroyed
        # later in a forked child (a corpus parser), it would wait for those threads forever
        del session
        raise refused

    def _check(self, session: Any) -> None:
        """The spec from the graph's metadata, checked against the graph's names and sizes."""
        try:
            meta = session.get_modelmeta().custom_metadata_map
        except Exception as exc:  # damaged metadata bytes: UnicodeDecodeError, RuntimeError, ...
            raise ArtifactError(f"{self.path}: ONNX metadata is damaged ({_first_line(exc)})") from None
        if SPEC_KEY not in meta:
            raise ArtifactError(f"{self.path}: ONNX model has no mpx spec in its metadata; "
                                "export it with `mpx export`")
        self.spec = ModelSpec.from_json(meta[SPEC_KEY], source=str(self.path))
        names_in = [i.name for i in session.get_inputs()]
        names_out = [o.name for o in session.get_outputs()]
        if names_in != list(INPUTS) or names_out != list(OUTPUTS):
            raise ArtifactError(f"{self.path}: graph names {names_in} -> {names_out} differ "
                                f"from the contract {list(INPUTS)} -> {list(OUTPUTS)}")
        state = session.get_inputs()[1].shape  # h0: [layers, batch, hidden]
        fixed = all(isinstance(n, int) for n in (state[0], state[2])) if len(state) == 3 else False
        check_sizes(self.spec, (state[0], state[2]) if fixed else None, self.path, "graph")
        self._outputs = names_out  # passed on every call: with None onnxruntime rebuilds the list
        self._inputs = names_in

    def call(self, notes: np.ndarray, h0: np.ndarray, c0: np.ndarray, uniforms: np.ndarray,
             temperature: np.ndarray, top_p: np.ndarray, controls: np.ndarray, given: np.ndarray) -> Outputs:
        feed = dict(zip(self._inputs, (notes, h0, c0, uniforms, temperature, top_p, controls, given)))
        return Outputs(*self.session.run(self._outputs, feed))


class TorchScriptBackend(Checked):
    """A TorchScript archive. It is a program: loading it runs its scripted __setstate__
    methods (tested: one that writes a file does so) and calling it runs its TorchScript, which
    may do what a program can; PyTorch's security policy says to treat such files like
    executables. Take .pt files only from sources you trust; ONNX is data. (`mpx info` reads a
    .pt without loading it: runtime/torchscript_archive.py.)"""

    name = "torchscript"

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        torch = import_torch("the torchscript backend")
        self.path = Path(path)
        require_file(self.path)
        use_torch_kernels(torch, threads)
        extra = {TORCHSCRIPT_SPEC_FILE: ""}
        try:
            self.module = torch.jit.load(str(self.path), map_location="cpu", _extra_files=extra)
        except Exception as exc:  # torch raises RuntimeError, ValueError, OSError, c10 errors...
            raise ArtifactError(f"{self.path}: not a loadable TorchScript archive ({_first_line(exc)})") from None
        if not extra[TORCHSCRIPT_SPEC_FILE]:
            raise ArtifactError(f"{self.path}: TorchScript archive has no {TORCHSCRIPT_SPEC_FILE}; "
                                "export it with `mpx export`")
        self.spec = ModelSpec.from_json(extra[TORCHSCRIPT_SPEC_FILE], source=str(self.path))
        shapes = {name: list(p.shape) for name, p in self.module.named_parameters()}
        check_sizes(self.spec, lstm_sizes(shapes), self.path, "module")
        self.module.eval()
        self._torch = torch

    def call(self, notes: np.ndarray, h0: np.ndarray, c0: np.ndarray, uniforms: np.ndarray,
             temperature: np.ndarray, top_p: np.ndarray, controls: np.ndarray, given: np.ndarray) -> Outputs:
        return torch_call(self._torch, self.module, (notes, h0, c0, uniforms, temperature, top_p, controls, given))


def import_torch(purpose: str) -> Any:
    try:
        import torch
    except ImportError:
        raise missing_extra(purpose, "torch", instead="or use --backend onnx") from None
    return torch


_ONEDNN: list[bool] = []  # the process's oneDNN choice, once made (use_torch_kernels)


def use_torch_kernels(torch: Any, threads: int | None, onednn: bool = False) -> None:
    """Set torch up for mpx's backends; oneDNN is chosen once per process, by the first call.

    Generation (the default) switches oneDNN off: its LSTM costs ~2.5x more than torch's own
    kernels for the one-note steps of generation (benchmarks/bench_generate.py), and the C++
    example does the same, so both sides run the same kernels and agree bit for bit. Scoring
    long chunks (`mpx eval`) is ~1.7x faster with it on, and asks for it before it opens a
    model. The switch (torch.backends.mkldnn.enabled) is process-global: flipping it per call
    raced between threads sharing a Generator, so the first choice stays for the process.
    """
    if not _ONEDNN:
        _ONEDNN.append(onednn)
        torch.backends.mkldnn.enabled = onednn
    elif _ONEDNN[0] != onednn:
        log.debug("oneDNN stays %s for this process (asked: %s)", _ONEDNN[0], onednn)
    if threads is not None:
        torch.set_num_threads(threads)


def torch_call(torch: Any, module: Any, inputs: tuple[np.ndarray, ...]) -> Outputs:
    """One graph call of a torch module (scripted or eager) on numpy arrays."""
    with torch.inference_mode():
        out = module(*(torch.from_numpy(x) for x in inputs))
    return Outputs(*(t.numpy() for t in out))


class CompiledBackend(Checked):
    """A torch.export archive (`.pt2`, run by torch's own kernels) or an AOTInductor package
    (`.aoti.pt2`, compiled C++ for the CPU that built it). Both follow the contract; an export
    whose time axis was fixed to one note (`mpx_time_axis` = 1) is fed one note per call over
    a longer input, the state carried, which gives the same numbers up to float rounding.
    Open them through the format registry: its checks (runtime/pt2_archive.py) refuse what
    torch's loaders would unpickle or evaluate before they run; `_guarded_load` is the second
    guard."""

    def __init__(self, path: str | os.PathLike[str], kind: str, threads: int | None = None) -> None:
        torch = import_torch(f"the {kind} backend")
        self.name, self.path = kind, Path(path)
        require_file(self.path)
        use_torch_kernels(torch, threads)
        try:
            with _guarded_load():
                run, spec, axis = _load_pt2(torch, self.path) if kind == "pt2" else _load_aoti(torch, self.path)
        except MpxError:
            raise
        except Exception as exc:  # torch's loaders raise many types on a foreign or damaged file
            raise ArtifactError(f"{self.path}: not a loadable {kind} archive ({_first_line(exc)})") from None
        if not spec:
            raise ArtifactError(f"{self.path}: the archive carries no mpx spec; export it with `mpx export`")
        self.spec = ModelSpec.from_json(spec, source=str(self.path))
        self._run, self._one_note, self._torch = run, axis == "1", torch

    def call(self, notes: np.ndarray, h0: np.ndarray, c0: np.ndarray, uniforms: np.ndarray,
             temperature: np.ndarray, top_p: np.ndarray, controls: np.ndarray, given: np.ndarray) -> Outputs:
        torch = self._torch
        x, h, c, *rest, last = (torch.from_numpy(np.ascontiguousarray(a)) for a in
                                (notes, h0, c0, uniforms, temperature, top_p, controls, given))
        with torch.inference_mode():
            if not self._one_note or x.shape[1] == 1:
                return Outputs(*(t.numpy() for t in self._run(x, h, c, *rest, last)))
            # one note per call: row t's next note, which the graph reads from notes[:, t + 1],
            # is given to it (teacher forcing, as the contract's rows t < T - 1 are)
            logits = []
            for t in range(x.shape[1]):
                following = x[:, t + 1] if t + 1 < x.shape[1] else last
                note, h, c, step_logits = self._run(x[:, t:t + 1].contiguous(), h, c, *rest, following.contiguous())
                logits.append(step_logits)
            return Outputs(note.numpy(), h.numpy(), c.numpy(), torch.cat(logits, 1).numpy())


_LOADING = threading.Lock()
_FORCE = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"


@contextlib.contextmanager
def _guarded_load() -> Iterator[None]:
    """While torch loads a compiled archive: every torch.load it makes is weights_only (torch
    falls back to full unpickling where the first try fails; the archive checks make sure
    nothing gets there, this makes sure nothing unpickles if it did); torch's own log lines are
    held back (a failed load logged a 13-line traceback before mpx's line); and the temporary
    files torch makes go into a folder of mpx's own, removed afterwards (a failed AOTInductor
    load left two aotinductor_* folders, 3.6 MB, in the temp folder each time). The settings
    are the process's: loads take turns."""
    with _LOADING:
        saved = {key: os.environ.get(key) for key in (_FORCE, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "TMPDIR")}
        folder = tempfile.mkdtemp(prefix="mpx-load-")
        quiet = logging.root.manager.disable
        os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)  # both set: torch refuses every load
        os.environ[_FORCE], os.environ["TMPDIR"] = "1", folder  # AOTInductor's C++ loader reads TMPDIR
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(quiet)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            shutil.rmtree(folder, ignore_errors=True)  # a loaded library stays mapped


def _load_pt2(torch: Any, path: Path) -> tuple[Any, str, str]:
    extra = {PT2_SPEC_FILE: "", TIME_AXIS_KEY: ""}
    module = torch.export.load(str(path), extra_files=extra).module()
    return module, _text(extra[PT2_SPEC_FILE]), _text(extra[TIME_AXIS_KEY])


def _load_aoti(torch: Any, path: Path) -> tuple[Any, str, str]:
    from torch._inductor.package import load_package
    compiled = load_package(str(path))
    meta = compiled.get_metadata()
    return compiled, meta.get(SPEC_KEY, ""), meta.get(TIME_AXIS_KEY, "")


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
