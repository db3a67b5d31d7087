"""torch.export (`music_producter.pt2`) and AOTInductor (`music_producter.aoti.pt2`) artifacts.

Both follow the graph contract (`forward(notes, h0, c0, uniforms, temperature, top_p) ->
(next_note, hn, cn, logits)`) with a dynamic batch and, where the module allows it, a dynamic
time axis. The runtime opens both (runtime/backends.py, CompiledBackend); `mpx export` checks
each against eager PyTorch with the same parity cases as the other artifacts before keeping it.

The time axis: torch.export of `nn.LSTM` specialises T to the example's length, because the
LSTM decomposes into one unrolled step per time step. Before exporting, every `nn.LSTM` of the
module (a copy; the caller's module is untouched) is replaced by `ScanLSTM`, the same
computation written with `torch._higher_order_ops.scan`, which export keeps as one loop over a
symbolic T and AOTInductor compiles to a while loop. If a module still specialises T (a
recurrent layer ScanLSTM does not cover), it is exported with T = 1 and says so in its
metadata (`mpx_time_axis` = "1"): consumers then prime one note per call, which the runtime
and the C++ example do for you.
"""
from __future__ import annotations

import copy
import io
import logging
from pathlib import Path

import torch
from torch import Tensor, nn
from torch._higher_order_ops.scan import scan

from mpx.runtime import integrity
from mpx.runtime.atomic import write_bytes
from mpx.runtime.contract import PT2_SPEC_FILE, SPEC_KEY, TIME_AXIS_KEY, dynamic_shapes, example_inputs
from mpx.runtime.spec import ModelSpec

from .errors import ExportError

log = logging.getLogger(__name__)


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


# -- export ------------------------------------------------------------------------------------
def examples(spec: ModelSpec, batch: int, time: int) -> tuple[Tensor, ...]:
    """The contract's example inputs as tensors (contiguous: AOTInductor bakes their strides in)."""
    arrays = example_inputs(spec.layers, spec.hidden, batch, time, spec.sampling.temperature, spec.sampling.top_p)
    return tuple(torch.from_numpy(a) for a in arrays)


def export_program(module: nn.Module, spec: ModelSpec) -> tuple[torch.export.ExportedProgram, bool]:
    """The ExportedProgram (batch dynamic) and whether T stayed dynamic."""
    graph = scannable(module)
    batch, time = torch.export.Dim("batch", min=1), torch.export.Dim("time", min=1)
    try:
        return _export(graph, examples(spec, 2, 5), {"batch": batch, "time": time}), True
    except torch._dynamo.exc.UserError as exc:
        if exc.error_type is not torch._dynamo.exc.UserErrorType.CONSTRAINT_VIOLATION:
            raise ExportError(f"torch.export failed: {_first_line(exc)}") from exc
        log.warning("torch.export specialised the time axis (%s): exporting with T = 1; "
                    "consumers prime one note per call", _first_line(exc))
    return _export(graph, examples(spec, 2, 1), {"batch": batch}), False


def _export(graph: nn.Module, example: tuple[Tensor, ...], dims: dict[str, object]) -> torch.export.ExportedProgram:
    with torch.no_grad():
        return torch.export.export(graph, example, dynamic_shapes=dynamic_shapes(dims))


def save_program(module: nn.Module, spec: ModelSpec, path: Path) -> None:
    """Write the torch.export archive (torch.export.save), the spec in its extra files, sealed
    with its checksum (runtime/integrity.py)."""
    program, dynamic_time = export_program(module, spec)
    extra = {PT2_SPEC_FILE: spec.to_json(indent=2), TIME_AXIS_KEY: "dynamic" if dynamic_time else "1"}
    buffer = io.BytesIO()  # serialised in memory, written by mpx: a full disk is then one line
    torch.export.save(program, buffer, extra_files=extra)
    write_bytes(path, integrity.seal_archive(buffer.getvalue(), extra[PT2_SPEC_FILE], str(path)))


def save_aoti(module: nn.Module, spec: ModelSpec, path: Path) -> None:
    """Write an AOTInductor package, compiled for this machine's CPU (tens of seconds), that
    C++ loads with torch::inductor::AOTIModelPackageLoader; its metadata holds the spec. The
    package is sealed with its checksum (runtime/integrity.py) once torch has written it."""
    program, dynamic_time = export_program(module, spec)
    metadata = {SPEC_KEY: spec.to_json(), TIME_AXIS_KEY: "dynamic" if dynamic_time else "1"}
    torch._inductor.aoti_compile_and_package(program, package_path=str(path),
                                             inductor_configs={"aot_inductor.metadata": metadata})
    write_bytes(path, integrity.seal_archive(path.read_bytes(), metadata[SPEC_KEY], str(path)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
