"""torch.export (`music_producter.pt2`) and AOTInductor packages of a contract-v2 module.

Both follow contract v2 (`forward(notes, h0, c0, uniforms, temperature, top_p) -> (next_note,
hn, cn, logits)`) with a dynamic batch and, where the module allows it, a dynamic time axis.

The time axis: torch.export of `nn.LSTM` specialises T to the example's length, because the
LSTM decomposes into one unrolled step per time step. Before exporting, every `nn.LSTM` of the
module (a copy; the caller's module is untouched) is replaced by `ScanLSTM`, the same
computation written with `torch._higher_order_ops.scan`, which export keeps as one loop over a
symbolic T and AOTInductor compiles to a while loop. If a module still specialises T (a
recurrent layer ScanLSTM does not cover), it is exported with T = 1 and says so in its
metadata (`mpx_time_axis` = "1"): consumers then prime one note per call, which the loaders
here do for you.

Every artifact is loaded back and compared with the eager module before it is kept
(B in {1, 3}, T in {1, 25}; every output within atol + rtol * |eager|), as mpx export does.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch._higher_order_ops.scan import scan

from .errors import ExportError, ParityError

log = logging.getLogger(__name__)

SPEC_KEY = "mpx_spec.json"          # extra file of the .pt2 archive, as in TorchScript
META_SPEC = "mpx_spec"              # AOTInductor metadata keys (strings only)
META_TEMPERATURE = "mpx_temperature"  # "t_pitch,t_step,t_duration,t_velocity"
META_TOP_P = "mpx_top_p"
TIME_KEY = "mpx_time_axis"          # "dynamic", or "1" when T was specialised
# CONTRACT_V2.md: a spec without `sampling` means these.
FALLBACK_TEMPERATURE = (1.0, 1.0, 1.0, 1.0)
FALLBACK_TOP_P = (0.95, 0.95, 0.95, 0.95)
ATOL = RTOL = 1e-5

Outputs = tuple[Tensor, Tensor, Tensor, Tensor]


# -- an LSTM that torch.export keeps dynamic in T --------------------------------------------
class ScanLSTM(nn.Module):
    """`nn.LSTM`'s computation (unidirectional, no projection) as a `scan` over time.

    It holds the wrapped LSTM's own parameters, so state dicts and numbers stay the same
    (within float rounding: ~1e-7 here). Each step's h goes into a [B, T, H] buffer carried by
    the scan rather than into the scan's stacked outputs: inductor's scan-to-while-loop
    lowering cannot size a stacked output whose shape holds the batch symbol (KeyError on it,
    torch 2.13), while a carry needs no sizing. Writing into the buffer is a one-hot
    multiply-add (exact: h * 1 + 0 and buf + h * 0), O(T) per step, so a primer of P notes
    costs O(P^2 * B * H): negligible for the 25-note primers and the one-note steps of mpx.
    """

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        if not supports(lstm):
            raise ValueError("ScanLSTM covers unidirectional LSTMs without projection only")
        self.lstm = lstm

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        lstm = self.lstm
        if not lstm.batch_first:
            x = x.transpose(0, 1)
        if state is None:
            zeros = x.new_zeros(lstm.num_layers, x.size(0), lstm.hidden_size)
            state = (zeros, zeros)
        h0, c0 = state
        hs, cs = [], []
        for layer in range(lstm.num_layers):
            x, h, c = self._layer(layer, x, h0[layer], c0[layer])
            hs.append(h)
            cs.append(c)
        if not lstm.batch_first:
            x = x.transpose(0, 1)
        return x, (torch.stack(hs), torch.stack(cs))

    def _layer(self, k: int, x: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        lstm = self.lstm
        w_hh = getattr(lstm, f"weight_hh_l{k}")
        b_hh = getattr(lstm, f"bias_hh_l{k}") if lstm.bias else None
        b_ih = getattr(lstm, f"bias_ih_l{k}") if lstm.bias else None
        # the input projection of every step at once, as torch's own LSTM kernel does
        gates_x = nn.functional.linear(x, getattr(lstm, f"weight_ih_l{k}"), b_ih)
        time = x.size(1)
        marks = torch.eye(time, dtype=x.dtype, device=x.device)  # row t: one-hot of step t
        out = h0.new_zeros(h0.size(0), time, h0.size(1))

        def step(carry: tuple[Tensor, Tensor, Tensor], xs: tuple[Tensor, Tensor]):
            h, c, buf = carry
            g_x, mark = xs
            i, f, g, o = (g_x + nn.functional.linear(h, w_hh, b_hh)).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            # a tiny per-step output of shape [1]: scan wants one, and it holds no batch symbol
            return (h, c, buf + h.unsqueeze(1) * mark[:, None]), mark[:1].clone()

        (h, c, out), _ = scan(step, (h0, c0, out), (gates_x.transpose(0, 1), marks))
        return out, h, c


def supports(lstm: nn.LSTM) -> bool:
    return not lstm.bidirectional and getattr(lstm, "proj_size", 0) == 0


def scannable(module: nn.Module) -> nn.Module:
    """An eval-mode copy of `module` with each supported nn.LSTM replaced by a ScanLSTM."""
    if isinstance(module, torch.jit.ScriptModule):
        raise ExportError("torch.export needs the eager module, not a TorchScript one")
    graph = copy.deepcopy(module).eval()
    for name, child in list(graph.named_modules()):
        if isinstance(child, nn.LSTM) and supports(child):
            parent, _, attr = name.rpartition(".")
            setattr(graph.get_submodule(parent) if parent else graph, attr, ScanLSTM(child))
        elif isinstance(child, nn.LSTM):
            log.warning("%s: bidirectional or projected LSTM kept as is (T may specialise)", name)
    return graph


# -- the spec --------------------------------------------------------------------------------
def state_shape(spec_json: str) -> tuple[int, int]:
    """(layers, hidden) from the spec's config: the contract's source of the state size."""
    try:
        config = json.loads(spec_json)["config"]
        return int(config["layers"]), int(config["hidden"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"the spec lacks config.layers / config.hidden ({exc!r}); a contract v2 "
                          "spec carries both") from None


def sampling_defaults(spec_json: str) -> tuple[list[float], list[float]]:
    """The spec's `sampling` temperature and top_p, or the contract's fallback 1 / 0.95."""
    sampling = json.loads(spec_json).get("sampling") or {}
    temperature = [float(v) for v in sampling.get("temperature", FALLBACK_TEMPERATURE)]
    top_p = [float(v) for v in sampling.get("top_p", FALLBACK_TOP_P)]
    if len(temperature) != 4 or len(top_p) != 4:
        raise ExportError(f"spec sampling defaults need 4 values each, got {temperature} and {top_p}")
    return temperature, top_p


# -- export ------------------------------------------------------------------------------------
def example_inputs(batch: int, time: int, layers: int, hidden: int, seed: int = 0) -> tuple[Tensor, ...]:
    """Contiguous contract inputs (AOTInductor bakes the example strides into its kernels)."""
    gen = torch.Generator().manual_seed(seed)
    notes = torch.rand(batch, time, 4, generator=gen) * torch.tensor([127.0, 0.5, 1.0, 126.0])
    notes[..., 3] += 1.0
    state = [torch.randn(layers, batch, hidden, generator=gen) * 0.5 for _ in range(2)]
    uniforms = torch.rand(batch, 8, generator=gen)
    return (notes.round(decimals=3), *state, uniforms, torch.tensor([1.0, 0.8, 0.8, 0.0]),
            torch.tensor([0.95, 0.9, 0.9, 1.0]))


def export_program(module: nn.Module, spec_json: str) -> tuple[torch.export.ExportedProgram, bool]:
    """The ExportedProgram (batch dynamic) and whether T stayed dynamic."""
    layers, hidden = state_shape(spec_json)
    graph = scannable(module)
    batch, time = torch.export.Dim("batch", min=1), torch.export.Dim("time", min=1)
    try:
        return _export(graph, example_inputs(2, 5, layers, hidden), batch, time), True
    except torch._dynamo.exc.UserError as exc:
        if exc.error_type is not torch._dynamo.exc.UserErrorType.CONSTRAINT_VIOLATION:
            raise ExportError(f"torch.export failed: {_first_line(exc)}") from exc
        log.warning("torch.export specialised the time axis (%s): exporting with T = 1; "
                    "consumers prime one note per call", _first_line(exc))
    return _export(graph, example_inputs(2, 1, layers, hidden), batch, None), False


def _export(graph: nn.Module, example: tuple[Tensor, ...], batch: torch.export.Dim,
            time: torch.export.Dim | None) -> torch.export.ExportedProgram:
    notes_axes = {0: batch, 1: time} if time is not None else {0: batch}
    dynamic = (notes_axes, {1: batch}, {1: batch}, {0: batch}, None, None)
    with torch.no_grad():
        return torch.export.export(graph, example, dynamic_shapes=dynamic)


def save_exported_program(module: nn.Module, spec_json: str, path: str | os.PathLike[str]) -> Path:
    """Write `music_producter.pt2` (torch.export.save), the spec in its extra files; checked
    against the eager module before it is kept."""
    program, dynamic_time = export_program(module, spec_json)
    extra = {SPEC_KEY: spec_json, TIME_KEY: "dynamic" if dynamic_time else "1"}
    with _atomic_pt2(path) as tmp:
        torch.export.save(program, tmp, extra_files=extra)
        check_parity(_eval_copy(module), load_exported_program(tmp)[0], dynamic_time, str(path))
    return Path(path)


def save_aoti_package(module: nn.Module, spec_json: str, path: str | os.PathLike[str]) -> Path:
    """Write an AOTInductor package (compiled for this machine's CPU, ~30 s to minutes) that
    C++ loads with torch::inductor::AOTIModelPackageLoader. Its metadata holds the spec and
    the sampling defaults; it is checked against the eager module before it is kept."""
    program, dynamic_time = export_program(module, spec_json)
    temperature, top_p = sampling_defaults(spec_json)
    metadata = {META_SPEC: spec_json, TIME_KEY: "dynamic" if dynamic_time else "1",
                META_TEMPERATURE: _csv(temperature), META_TOP_P: _csv(top_p)}
    with _atomic_pt2(path) as tmp:
        torch._inductor.aoti_compile_and_package(
            program, package_path=tmp, inductor_configs={"aot_inductor.metadata": metadata})
        check_parity(_eval_copy(module), load_aoti_package(tmp)[0], dynamic_time, str(path))
    return Path(path)


def _eval_copy(module: nn.Module) -> nn.Module:
    """The reference for parity: the caller's module unchanged, without dropout."""
    return copy.deepcopy(module).eval()


@contextlib.contextmanager
def _atomic_pt2(target: str | os.PathLike[str]) -> Iterator[str]:
    """A temporary .pt2 path beside `target`, renamed onto it only if the block succeeds.

    mpx.runtime.atomic's temporary names end in .tmp; torch's pt2 writers and readers want
    .pt2 (AOTInductor asserts it), hence this variant.
    """
    target = Path(target)
    if not target.parent.is_dir():
        raise ExportError(f"{target.parent}: output directory does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".pt2", dir=target.parent)
    except OSError as exc:
        raise ExportError(f"{target}: cannot write here ({exc.strerror or exc})") from None
    os.close(fd)
    try:
        yield tmp
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp's 0600 is too private for an artifact
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _csv(values: Sequence[float]) -> str:
    return ",".join(repr(float(v)) for v in values)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


# -- loading -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Pt2Graph:
    """A loaded .pt2 / AOTInductor package behind the contract's forward and zero_state."""

    run: Callable[..., Sequence[Tensor]]
    layers: int
    hidden: int
    dynamic_time: bool

    def __call__(self, notes: Tensor, h0: Tensor, c0: Tensor, uniforms: Tensor,
                 temperature: Tensor, top_p: Tensor) -> Outputs:
        if self.dynamic_time or notes.shape[1] == 1:
            return self._run(notes, h0, c0, uniforms, temperature, top_p)
        return self._one_note_at_a_time(notes, h0, c0, uniforms, temperature, top_p)

    def zero_state(self, batch: int) -> tuple[Tensor, Tensor]:
        h = torch.zeros(self.layers, batch, self.hidden)
        return h, h.clone()

    def _run(self, *inputs: Tensor) -> Outputs:
        # contiguous: AOTInductor kernels assume the example's (contiguous) strides
        next_note, hn, cn, logits = self.run(*(t.contiguous() for t in inputs))
        return next_note, hn, cn, logits

    def _one_note_at_a_time(self, notes: Tensor, h: Tensor, c: Tensor, *rest: Tensor) -> Outputs:
        """A graph exported with T = 1 run over T notes: the state carried, the logits of
        every call joined, next_note from the last call (equal to one T-note call up to
        float rounding)."""
        logits = []
        for t in range(notes.shape[1]):
            next_note, h, c, step_logits = self._run(notes[:, t:t + 1], h, c, *rest)
            logits.append(step_logits)
        return next_note, h, c, torch.cat(logits, 1)


def load_exported_program(path: str | os.PathLike[str]) -> tuple[Pt2Graph, str]:
    """(graph, spec JSON) of a music_producter.pt2 written by save_exported_program."""
    extra = {SPEC_KEY: "", TIME_KEY: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except (RuntimeError, ValueError, OSError, KeyError, zipfile.BadZipFile) as exc:
        raise ExportError(f"{path}: not a loadable torch.export archive ({_first_line(exc)})") from None
    spec = _text(extra[SPEC_KEY])
    if not spec:
        raise ExportError(f"{path}: the archive has no {SPEC_KEY}; write it with save_exported_program")
    layers, hidden = state_shape(spec)
    return Pt2Graph(program.module(), layers, hidden, _text(extra[TIME_KEY]) != "1"), spec


def load_aoti_package(path: str | os.PathLike[str]) -> tuple[Pt2Graph, str]:
    """(graph, spec JSON) of an AOTInductor package written by save_aoti_package."""
    from torch._inductor.package import load_package
    if not Path(path).is_file():
        raise ExportError(f"{path}: no such AOTInductor package")
    try:
        compiled = load_package(str(path))
    except (RuntimeError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise ExportError(f"{path}: not a loadable AOTInductor package ({_first_line(exc)})") from None
    metadata = compiled.get_metadata()
    spec = metadata.get(META_SPEC, "")
    if not spec:
        raise ExportError(f"{path}: the package has no {META_SPEC} metadata; write it with save_aoti_package")
    layers, hidden = state_shape(spec)
    return Pt2Graph(compiled, layers, hidden, metadata.get(TIME_KEY) != "1"), spec


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- validation ------------------------------------------------------------------------------------
def check_parity(reference: nn.Module, candidate: Pt2Graph, dynamic_time: bool, name: str) -> None:
    """Raise ParityError unless every output of `candidate` is within ATOL + RTOL * |eager|."""
    worst = 0.0
    for batch in (1, 3):
        for time in (1, 25):  # T = 25 runs one note per call when T was exported as 1
            inputs = example_inputs(batch, time, candidate.layers, candidate.hidden, seed=batch * 100 + time)
            with torch.no_grad():
                want = reference(*inputs)
                got = candidate(*inputs)
            for label, a, b in zip(("next_note", "hn", "cn", "logits"), got, want):
                if a.shape != b.shape:
                    raise ParityError(f"{name}: {label} has shape {list(a.shape)}, eager "
                                      f"{list(b.shape)} at B={batch}, T={time}; not kept")
                diff = (a - b).abs()
                worst = max(worst, float(diff.max()))
                if bool((diff > ATOL + RTOL * b.abs()).any()):
                    raise ParityError(f"{name}: {label} differs from eager by up to "
                                      f"{float(diff.max()):.3g} at B={batch}, T={time}; not kept")
    log.info("%s: parity with eager, worst |difference| %.3g (T %s)", name, worst,
             "dynamic" if dynamic_time else "= 1")


__all__ = ["ScanLSTM", "Pt2Graph", "save_exported_program", "save_aoti_package",
           "load_exported_program", "load_aoti_package", "export_program", "sampling_defaults",
           "state_shape", "check_parity"]
