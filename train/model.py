"""The next-note model, which is also the whole generator (graph contract v3).

One LSTM over raw notes (pitch, step, duration, velocity), then one chain of decisions per note:
the attributes of the next note are drawn in `config.order` (step, pitch, duration, velocity by
default: timing first, as the compound-word and nested music transformers decode a note), each
attribute's head seeing the attributes drawn before it for the same note, so whether a note is
a chord note, its pitch, its length and its loudness agree with each other. At every position
the model gives a categorical distribution over the bins of each attribute (runtime/bins.py):
`logits` [B, T, 4, 128], one row per attribute, padded to 128 bins. `forward` is the graph
contract: it also draws the next note after the last position with the uniforms and the per-row
temperature and top-p it is given, so every artifact (TorchScript, ONNX, ...) is the generator
itself and any consumer gets mpx's music by calling it once per note.

Input encoding happens here, in one place: a learned vector per MIDI pitch (the pitch rounded
and clipped to 0..127), and log(t + 0.01) of step and duration and log(v + 1) of velocity,
which make a chord's few milliseconds and a run's sixty far apart.

Heads: A = W y + b + K f gives every head its pre-activation [.., 4 M] at once (M =
head_hidden, heads in chain order; f: the controls as the network reads them); head i reads
relu(A_i) through its own output layer onto its attribute's bins (padded to 128: weight 0,
bias -1e4, never trained); once bin k of chain attribute i is known (drawn, given, or the real
note in training), A += E_i[k] (a learned vector per bin, for every later head).

Controls [B, C] (runtime/controls.py): a given control x (>= 0) is read as
(log(x + offset) - centre) / scale, a control not given (< 0) as a learned value. They go where
`config.controls_into` says: into the heads (the default: the LSTM state does not depend on them,
so a caller may change them between notes with immediate effect), the LSTM's input, or both
(measured: the same figures on the validation side, at a larger graph; docs/v3-model.md).

The sampling rule of one attribute is runtime/sampling.py's (the numpy statement); see `draw`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mpx.runtime import bins, controls as ctl, sampling
from mpx.runtime.config import ModelConfig
from mpx.runtime.contract import ATTRIBUTES, LOGIT_PAD, VOCAB

A = len(ATTRIBUTES)
INPUT_OFFSETS = (bins.TIME_OFFSET, bins.TIME_OFFSET, 1.0)  # log(x + offset) of step, duration, velocity
MAX_Z = 10.0               # exp(10) s is beyond every time bin: keeps exp() finite for every column
BIG = 1e30                 # logits of the bins a nucleus leaves out: -BIG


class NoteLSTM(nn.Module):
    """The v3 next-note model: one LSTM over raw notes and the controls, then one chain of
    decisions per note. The attributes of the next note are drawn in `config.order`; each
    attribute's head is a small network over the LSTM output plus a learned vector per bin of
    every attribute drawn before it for the same note, so a chord decision, a pitch, a length
    and a loudness agree with each other.

    Heads: A = W y + b gives every head its pre-activation [.., 4, M] at once (M =
    head_hidden, chain order); head i reads relu(A_i) through its own output layer onto its
    attribute's bins; once bin k of attribute i is known (drawn, given, or the real note in
    training), A += E_i[k] (E_i: [bins of i, 4, M], its rows for heads <= i unused).

    Controls [B, C] (runtime/controls.py): a given control (>= 0) is read as
    (log(x + offset) - centre) / scale, a control not given (< 0) as a learned value; these C
    numbers go into the heads, the LSTM's input or both (`config.controls_into`).

    Sampling rule of one attribute (n bins, logits z, temperature t, top_p, uniforms u, v):
        s = z / max(t, 1e-6); p = softmax(s)
        top_p < 1: the K = min(16, n) largest p sorted, C their running sums; k = the first
                   index with C_k >= top_p (K if none); tau = that k-th largest p.
        top_p = 1: tau = 0
        q_j = p_j where p_j >= tau, else 0; Q_j = q_1 + ... + q_j (bins in their own order)
        greedy (t = 0): u := 0, v := 1/2
        bin = min(#{j : Q_j <= u * Q_n}, n - 1); value = decode(bin, v) (runtime/bins.py)
    No sort of all n bins and no cumulative sum over a padded [4, 128]: each attribute is drawn
    over its own bins only; with top_p = 1 the partial sort's result is unused but still computed
    (no control flow in the graph). runtime/sampling.py states the rule in numpy.
    """

    __constants__ = ["attributes", "vocab", "temperature_floor", "max_z", "time_offset", "pad", "big"]

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attributes, self.vocab, self.pad, self.big = A, VOCAB, LOGIT_PAD, BIG
        self.temperature_floor, self.max_z, self.time_offset = sampling.TEMPERATURE_FLOOR, MAX_Z, bins.TIME_OFFSET
        self.config = config
        self.hidden, self.layers, self.head_hidden = config.hidden, config.layers, config.head_hidden
        counts = bins.counts(config)
        self.counts = counts
        self.chain = [ATTRIBUTES.index(name) for name in config.order]  # chain position -> attribute
        self.caps = [min(sampling.NUCLEUS_CAP, counts[a]) for a in self.chain]
        self.controls = ctl.C
        self.into_lstm = config.controls_into in ("lstm", "both")
        self.into_heads = config.controls_into in ("heads", "both")
        self.pitch_embedding = nn.Embedding(VOCAB, config.embedding)
        self.control_default = nn.Parameter(torch.zeros(ctl.C))
        self.lstm = nn.LSTM(config.embedding + 3 + (ctl.C if self.into_lstm else 0), config.hidden, config.layers,
                            batch_first=True, dropout=config.dropout if config.layers > 1 else 0.0)
        self.dropout = nn.Dropout(config.dropout)
        m = config.head_hidden
        self.head_in = nn.Linear(config.hidden, A * m)
        self.head_controls = nn.Linear(ctl.C, A * m, bias=False)  # used when controls go into the heads
        # Every head's output layer in one matrix, each padded to VOCAB rows (weight 0, bias
        # LOGIT_PAD: the contract's padding, never trained since the loss reads each attribute's
        # own bins), so the graph's logits need no padding op; the vectors of the drawn bins in
        # one table. Both are cut per chain position by the row ranges below (TorchScript
        # indexes a ModuleList by literals only).
        sizes = [counts[a] for a in self.chain]
        self.sizes = sizes
        self.needs_bin = [i < A - 1 for i in range(A)]  # the last attribute feeds no head
        self.out_rows = [sum(sizes[:i]) for i in range(A + 1)]
        self.out_weight = nn.Parameter(torch.zeros(A * VOCAB, m))
        self.out_bias = nn.Parameter(torch.full((A * VOCAB,), LOGIT_PAD))
        for i in range(A):
            layer = nn.Linear(m, sizes[i])
            with torch.no_grad():
                self.out_weight[i * VOCAB:i * VOCAB + sizes[i]] = layer.weight
                self.out_bias[i * VOCAB:i * VOCAB + sizes[i]] = layer.bias
        self.drawn = nn.Embedding(self.out_rows[A - 1], A * m)  # the last attribute feeds no head
        with torch.no_grad():
            self.drawn.weight.normal_(0.0, 0.1)
        k = bins.constants(config)
        c = ctl.graph_constants()
        self.register_buffer("offsets", torch.tensor(INPUT_OFFSETS), persistent=False)
        self.register_buffer("within", torch.tensor(k["within"]), persistent=False)
        self.register_buffer("scale", torch.tensor(k["scale"]), persistent=False)
        self.register_buffer("shift", torch.tensor(k["shift"]), persistent=False)
        self.register_buffer("is_time", torch.tensor(k["time"]) > 0, persistent=False)
        self.register_buffer("thresholds", torch.from_numpy(bins.thresholds(config)), persistent=False)
        self.register_buffer("greedy_uniforms", torch.tensor([0.0] * A + [0.5] * A), persistent=False)
        self.register_buffer("control_offset", torch.tensor(c["offset"]), persistent=False)
        self.register_buffer("control_scale", 1.0 / torch.tensor(c["scale"]), persistent=False)
        self.register_buffer("control_shift", -torch.tensor(c["centre"]) / torch.tensor(c["scale"]), persistent=False)

    # -- inputs ------------------------------------------------------------------------------
    def control_features(self, controls: Tensor) -> Tensor:
        """Controls [..., C] (negative = not given) -> what the network reads [..., C]:
        (log(x + offset) - centre) / scale where given, the learned default where not."""
        x = torch.log(torch.clamp(controls, min=0.0) + self.control_offset) * self.control_scale + self.control_shift
        return torch.where(controls >= 0, x, self.control_default)

    def encode(self, notes: Tensor, controls: Tensor) -> Tensor:
        """Raw notes [B, T, 4] (and control features [B, T, C] or [B, C] when they go into the
        LSTM) -> LSTM input."""
        pitch = torch.clamp(notes[..., 0], 0.0, 127.0).round().long()
        others = torch.log(torch.clamp(notes[..., 1:], min=0.0) + self.offsets)
        if not self.into_lstm:
            return torch.cat([self.pitch_embedding(pitch), others], dim=-1)
        if controls.dim() == 2:  # one set per row: the same at every position
            controls = controls.unsqueeze(1) + others[..., :1] * 0.0
        return torch.cat([self.pitch_embedding(pitch), others, controls], dim=-1)

    def pre_activations(self, y: Tensor, features: Tensor) -> Tensor:
        """Every head's pre-activation [B, T, 4 M] from the LSTM output [B, T, H] (and the
        control features [B, T, C] or [B, C] when they go into the heads)."""
        pre = self.head_in(y)
        if not self.into_heads:
            return pre
        extra = self.head_controls(features)
        return pre + (extra.unsqueeze(1) if extra.dim() == 2 else extra)

    def bin_of(self, values: Tensor) -> Tensor:
        """Values [..., 4] -> their bins [..., 4] (int64): thresholds at or below each value."""
        return (values.unsqueeze(-1) >= self.thresholds).sum(-1)

    # -- training ----------------------------------------------------------------------------
    def training_scores(self, notes: Tensor, h0: Tensor, c0: Tensor, controls: Tensor,
                        targets: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        """Teacher forcing: ([logits [B, T, n] of each attribute, contract order], hn, cn); each
        head sees the real bins (`targets` [B, T, 4]) of the attributes before it."""
        features = self.control_features(controls)
        y, (hn, cn) = self.lstm(self.encode(notes, features), (h0, c0))
        pre = self.pre_activations(self.dropout(y), features)
        out: list[Tensor] = [pre] * self.attributes
        for i, a in enumerate(self.chain):
            out[a] = self.head(pre, i)
            if i < self.attributes - 1:
                pre = self.add_drawn(pre, targets[..., a], i)
        return out, hn, cn

    def head(self, pre: Tensor, i: int, padded: bool = False) -> Tensor:
        """Chain position i's logits [..., n] (padded: [..., VOCAB]) from the pre-activations
        [..., 4 M]."""
        m = self.head_hidden
        end = (i + 1) * self.vocab if padded else i * self.vocab + self.sizes[i]
        rows = slice(i * self.vocab, end)
        return F.linear(torch.relu(pre[..., i * m:(i + 1) * m]), self.out_weight[rows], self.out_bias[rows])

    def add_drawn(self, pre: Tensor, k: Tensor, i: int) -> Tensor:
        """The later heads' pre-activations once chain position i's bin is k [...]."""
        return pre + self.drawn(k + self.out_rows[i])

    # -- the graph ---------------------------------------------------------------------------
    def forward(self, notes: Tensor, h0: Tensor, c0: Tensor, uniforms: Tensor, temperature: Tensor,
                top_p: Tensor, controls: Tensor, given: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The graph contract v3: (next_note [B, 4], hn, cn, logits [B, T, 4, 128]).

        Every row runs the chain: the attributes of the note that follows row t are the next
        input note's (t < T - 1) or `given`; a negative one (only `given` may hold them) is
        drawn here. Written for a small graph: the heads work on [B, T, 1, .] so that their
        logits stack into [B, T, 4, 128] without reshapes, per-attribute columns come from one
        split each, and every size is a Python constant."""
        features = self.control_features(controls)
        y, (hn, cn) = self.lstm(self.encode(notes, features), (h0, c0))
        pre = self.pre_activations(y, features).unsqueeze(2)             # [B, T, 1, 4 M]
        # (concatenated, then sliced: torch.export keeps T dynamic down to 1 this way; a slice
        # notes[:, 1:] of T - 1 rows guards T != 2)
        following = torch.cat([notes, given.unsqueeze(1)], dim=1)[:, 1:]  # [B, T, 4]
        known = self.bin_of(following).split(1, dim=-1)                  # [B, T, 1] each
        draw_here = (following < 0).split(1, dim=-1)
        drawing = temperature > 0  # (greedy rows take u = 0, v = 1/2)
        u = torch.where(torch.cat([drawing, drawing], dim=-1), uniforms, self.greedy_uniforms)
        per_row = torch.cat([1.0 / torch.clamp(temperature, min=self.temperature_floor), top_p,
                             (top_p < 1.0).to(top_p.dtype), u[:, :self.attributes]], dim=-1)
        per_row = per_row.view(-1, 1, 1, 4 * self.attributes).split(1, dim=-1)  # 16 x [B, 1, 1, 1]
        n = self.attributes
        logits: list[Tensor] = [pre] * n
        chosen: list[Tensor] = [known[0]] * n
        for i in range(n):
            a = self.chain[i]
            z = self.head(pre, i, padded=True)                           # [B, T, 1, 128]
            logits[a] = z
            drawn = self.draw(z[..., :self.sizes[i]], per_row[a], per_row[n + a], per_row[2 * n + a], per_row[3 * n + a], i)
            k = torch.where(draw_here[a], drawn, known[a])               # [B, T, 1]
            chosen[a] = k
            if self.needs_bin[i]:
                pre = self.add_drawn(pre, k, i)
        k = torch.cat(chosen, dim=-1)[:, -1].to(notes.dtype)            # [B, 4]
        z = (k + u[:, self.attributes:] * self.within) * self.scale + self.shift
        value = torch.relu(torch.where(self.is_time, torch.exp(torch.clamp(z, max=self.max_z)) - self.time_offset,
                                       torch.floor(z)))
        return torch.where(given >= 0, given, value), hn, cn, torch.cat(logits, dim=2)

    def draw(self, z: Tensor, inv_t: Tensor, top_p: Tensor, on: Tensor, u: Tensor, i: int) -> Tensor:
        """Chain position i's bin [B, T, 1] (int64) from its logits [B, T, 1, n]; inv_t, top_p,
        u [B, 1, 1, 1]; on: 1 where top_p < 1, else 0 (class docstring)."""
        s = z * inv_t
        p = torch.softmax(s, dim=-1)
        top = torch.topk(p, self.caps[i], dim=-1).values
        before = torch.cumsum(top, dim=-1) - top                        # mass of the likelier bins
        tau = torch.where(before < top_p, top, 2.0).min(dim=-1, keepdim=True).values * on
        q = torch.cumsum(torch.softmax(torch.where(p >= tau, s, -self.big), dim=-1), dim=-1)
        return torch.clamp((q <= u).sum(-1), max=self.sizes[i] - 1)

    @torch.jit.export
    def zero_state(self, batch_size: int) -> tuple[Tensor, Tensor]:
        h = torch.zeros(self.layers, batch_size, self.hidden, dtype=self.scale.dtype)
        return h, torch.zeros_like(h)
