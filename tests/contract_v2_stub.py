"""Stand-ins for contract v2 until mpx has them: a module that follows the contract and the
generation protocol in numpy + torch (CONTRACT_V2.md).

`Graph` is a copy of the prototype (random weights, H = 256, L = 1) with `zero_state` added.
`contract_model()` is what the C++ and pt2 tests run; switch it to the real bundled model
(mpx.train.model.NoteLSTM and its spec) and nothing else changes.
"""
from __future__ import annotations

import json
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

H, E, W = 256, 64, 128
LAYERS = 1
BINS = [128, 64, 64, 32]  # pitch, step, duration, velocity
L0 = float(np.log(0.01))
# Sampling defaults the stub spec carries: not 1 / 0.95, so a test sees them being read.
DEFAULT_TEMPERATURE = [1.0, 0.8, 0.8, 1.0]
DEFAULT_TOP_P = [0.95, 0.9, 0.9, 0.95]


class Graph(nn.Module):
    """The prototype of contract v2: forward(notes, h0, c0, uniforms, temperature, top_p)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(128, E)
        self.lstm = nn.LSTM(E + 3, H, LAYERS, batch_first=True)
        self.pad = nn.Linear(H, 4 * W)
        with torch.no_grad():
            self.pad.weight.mul_(3.0)
            for a, n in enumerate(BINS):
                self.pad.weight[a * W + n:(a + 1) * W] = 0.0
                self.pad.bias[a * W + n:(a + 1) * W] = -1e4
        scale = [1.0, (np.log(4.01) - L0) / 64, (np.log(8.01) - L0) / 64, 127.0 / 32]
        self.register_buffer("offsets", torch.tensor([0.01, 0.01, 1.0]))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
        self.register_buffer("shift", torch.tensor([0.0, L0, L0, 1.0]))
        self.register_buffer("within", torch.tensor([0.0, 1.0, 1.0, 1.0]))
        self.register_buffer("greedy_u", torch.tensor([0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5]))
        self.register_buffer("is_time", torch.tensor([False, True, True, False]))
        self.register_buffer("last_bin", torch.tensor([127, 63, 63, 31]))
        self.register_buffer("bins", torch.arange(W))

    def forward(self, notes: Tensor, h0: Tensor, c0: Tensor, uniforms: Tensor,
                temperature: Tensor, top_p: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        pitch = torch.clamp(notes[..., 0], 0.0, 127.0).round().long()
        x = torch.cat([self.emb(pitch), torch.log(torch.clamp(notes[..., 1:], min=0.0) + self.offsets)], -1)
        y, (hn, cn) = self.lstm(x, (h0, c0))
        logits = self.pad(y).reshape(y.shape[0], y.shape[1], 4, 128)
        last = logits[:, -1]
        sampling = temperature > 0
        values, order = torch.topk(last / torch.clamp(temperature, min=1e-6).unsqueeze(-1), 128, dim=-1)
        cdf = torch.cumsum(torch.softmax(values, -1), -1)
        u = torch.where(torch.cat([sampling, sampling]), uniforms, self.greedy_u)
        rank = torch.minimum((cdf <= (u[:, :4] * top_p).unsqueeze(-1)).sum(-1, keepdim=True),
                             self.last_bin.unsqueeze(-1))
        chosen = ((self.bins == rank).to(torch.float32) * order.to(torch.float32)).sum(-1)
        z = (chosen + u[:, 4:] * self.within) * self.scale + self.shift
        note = torch.relu(torch.where(self.is_time, torch.exp(z) - 0.01, torch.floor(z)))
        return note, hn, cn, logits

    @torch.jit.export
    def zero_state(self, batch: int) -> tuple[Tensor, Tensor]:
        h = torch.zeros(self.lstm.num_layers, batch, self.lstm.hidden_size)
        return h, h.clone()


def stub_spec(sampling: bool = True) -> str:
    """The spec fields a consumer may rely on (CONTRACT_V2.md), nothing more."""
    spec: dict = {"spec_version": 2, "prototype": True, "config": {"hidden": H, "layers": LAYERS},
                  "seq_len": 25}
    if sampling:
        spec["sampling"] = {"temperature": DEFAULT_TEMPERATURE, "top_p": DEFAULT_TOP_P}
    return json.dumps(spec)


def contract_model() -> tuple[nn.Module, str]:
    """The eager module under test and its spec JSON. The one line to switch to the real model."""
    torch.manual_seed(0)
    return Graph().eval(), stub_spec()


# -- the portable random stream (SplitMix64, counter-based) ------------------------------------
_GAMMA, _M1, _M2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray | int) -> np.ndarray:
    z = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):  # wrapping modulo 2^64 is the definition
        z = z + _GAMMA
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def uniforms(seed: int, streams: int, note: int) -> np.ndarray:
    """[streams, 8] float32: column j of row b is uniform(seed, b, 8 * note + j)."""
    with np.errstate(over="ignore"):
        key = splitmix64(splitmix64(np.uint64(seed)) + np.arange(streams, dtype=np.uint64))
        counter = np.uint64(8 * note) + np.arange(8, dtype=np.uint64)
        bits = splitmix64(key[:, None] + counter[None, :]) >> np.uint64(40)
    return bits.astype(np.float32) * np.float32(2.0 ** -24)


# -- the generation protocol -------------------------------------------------------------------
Step = Callable[..., Sequence[Tensor]]


def generate(step: Step, state: tuple[Tensor, Tensor], primer: np.ndarray, n: int, seed: int,
             temperature: Sequence[float], top_p: Sequence[float], whole_primer: bool = True) -> np.ndarray:
    """n notes [n, 4] of one stream: one call with the primer, then one call per note.

    With whole_primer=False (a graph exported with T = 1) the primer goes in one note per call
    and only the last call's next_note is kept.
    """
    h, c = state
    t = torch.tensor(temperature, dtype=torch.float32)
    p = torch.tensor(top_p, dtype=torch.float32)
    x = torch.from_numpy(np.ascontiguousarray(primer, dtype=np.float32))[None]
    out = np.empty((n, 4), np.float32)
    with torch.inference_mode():
        if not whole_primer:
            for j in range(x.shape[1] - 1):
                _, h, c, _ = step(x[:, j:j + 1].contiguous(), h, c, torch.from_numpy(uniforms(seed, 1, 0)), t, p)
            x = x[:, -1:].contiguous()
        for i in range(n):
            note, h, c, _ = step(x, h, c, torch.from_numpy(uniforms(seed, 1, i)), t, p)
            out[i] = note[0].numpy()
            x = note.reshape(1, 1, 4).contiguous()
    return out
