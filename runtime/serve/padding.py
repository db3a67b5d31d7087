"""A backend whose every call runs on a multiple of `quantum` rows.

onnxruntime's LSTM kernel works on blocks of rows (4 on x86-64 with AVX2) and rounds the rows
of a partial block (a call of 1, 2, 3, 5, ... rows) differently from those of a full block. So
without padding, a row's state and, rarely, its drawn note would depend on how many other rows
share its call. PaddedBackend pads the batch axis of every input with copies of the last row
and drops their outputs: a row's bits are then its own whatever the batch's size, position
and neighbours (tests/test_serve.py: test_row_padding_makes_a_rows_bits_its_own). Per-row
sampling inputs of contract v3 ([B, 4], [B, C]) are padded the same way; v2's [4] are not.
"""
from __future__ import annotations

import numpy as np

from ..backends import Backend
from ..contract import Outputs


class PaddedBackend:
    """Wraps a backend; `call` and `run` as the contract has them."""

    def __init__(self, backend: Backend, quantum: int = 4) -> None:
        self.backend, self.quantum = backend, quantum
        self.name, self.spec, self.path = backend.name, backend.spec, backend.path
        self.calls = 0

    def call(self, notes: np.ndarray, h0: np.ndarray, c0: np.ndarray, uniforms: np.ndarray,
             *rest: np.ndarray) -> Outputs:
        self.calls += 1
        rows = notes.shape[0]
        extra = -rows % self.quantum
        if not extra:
            return self.backend.call(notes, h0, c0, uniforms, *rest)
        pad = np.full(extra, rows - 1)

        def padded(a: np.ndarray, axis: int = 0) -> np.ndarray:
            return np.concatenate([a, np.take(a, pad, axis=axis)], axis=axis)

        rest = tuple(padded(a) if a.ndim == 2 else a for a in rest)  # v3's per-row [B, k]
        out = self.backend.call(padded(notes), padded(h0, 1), padded(c0, 1), padded(uniforms), *rest)
        return Outputs(out.next_note[:rows], out.hn[:, :rows], out.cn[:, :rows], out.logits[:rows])

    def run(self, *inputs: np.ndarray) -> Outputs:
        from ..backends import check_inputs
        return self.call(*check_inputs(self.spec, *inputs))
