"""The next-note model, which is also the whole generator (graph contract v2).

One LSTM over raw notes (pitch, step, duration, velocity). At every position it predicts a
categorical distribution over the bins of each attribute of the next note (runtime/bins.py):
`logits` [B, T, 4, 128], one row per attribute, padded to 128 bins. `forward` is the graph
contract: it also samples the next note from the last position, with the uniforms and the
per-attribute temperature and top-p it is given, so every artifact (TorchScript, ONNX, ...) is
the generator itself and any consumer gets mpx's music by calling it once per note.

Input encoding happens here, in one place: a learned vector per MIDI pitch (the pitch rounded
and clipped to 0..127), and log(t + 0.01) of step and duration and log(v + 1) of velocity,
which make a chord's few milliseconds and a run's sixty far apart.

Sampling, per row and attribute a, with no control flow (docs/contract.md, "Sampling inside the graph"):
    s = logits[:, -1, a] / max(t_a, 1e-6); sort descending (order o); C = cumsum(softmax(s))
    greedy (t_a = 0): u := 0, v := 1/2
    k = min(#{j : C_j <= u * top_p_a}, bins_a - 1); bin = o_k; value = decode(bin, v)
Choosing the bin takes a one-hot product rather than a gather: onnx's reference evaluator
rejects the index shape that torch's gather exports, and a product works everywhere.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mpx.runtime import bins
from mpx.runtime.config import ModelConfig
from mpx.runtime.contract import ATTRIBUTES, LOGIT_PAD, VOCAB

A = len(ATTRIBUTES)
INPUT_OFFSETS = (bins.TIME_OFFSET, bins.TIME_OFFSET, 1.0)  # log(x + offset) of step, duration, velocity
TEMPERATURE_FLOOR = 1e-6   # the divisor for greedy rows: any positive number keeps the argmax first
MAX_Z = 10.0               # exp(10) s is beyond every time bin: keeps exp() finite for every column


class NoteLSTM(nn.Module):
    __constants__ = ["attributes", "vocab", "temperature_floor", "max_z", "time_offset"]

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attributes, self.vocab = A, VOCAB
        self.temperature_floor, self.max_z, self.time_offset = TEMPERATURE_FLOOR, MAX_Z, bins.TIME_OFFSET
        self.config = config  # not scripted (TorchScript skips it): forward reads the fields below
        self.hidden = config.hidden
        self.layers = config.layers
        self.pitch_embedding = nn.Embedding(VOCAB, config.embedding)
        self.lstm = nn.LSTM(config.embedding + 3, config.hidden, config.layers, batch_first=True,
                            dropout=config.dropout if config.layers > 1 else 0.0)
        # Training-time only: in eval mode (every export and backend) it is the identity.
        self.dropout = nn.Dropout(config.dropout)
        # The four heads as one layer laid out as the contract's [4, 128] logits: one matrix
        # product per call. Rows past an attribute's bin count are padding: weight 0, bias
        # LOGIT_PAD. The loss never sees them (it reads each attribute's own bins), so they get
        # no gradient and keep those values through training.
        self.heads = nn.Linear(config.hidden, A * VOCAB)
        counts = bins.counts(config)
        real = torch.zeros(A, VOCAB, dtype=torch.bool)
        for a, n in enumerate(counts):
            real[a, :n] = True
        with torch.no_grad():
            self.heads.weight[~real.flatten()] = 0.0
            self.heads.bias[~real.flatten()] = LOGIT_PAD
        # Constants of the input encoding and of sampling, derived from config: not saved.
        k = bins.constants(config)
        self.register_buffer("offsets", torch.tensor(INPUT_OFFSETS), persistent=False)
        self.register_buffer("within", torch.tensor(k["within"]), persistent=False)
        self.register_buffer("scale", torch.tensor(k["scale"]), persistent=False)
        self.register_buffer("shift", torch.tensor(k["shift"]), persistent=False)
        self.register_buffer("is_time", torch.tensor(k["time"]) > 0, persistent=False)
        self.register_buffer("last_rank", torch.tensor(k["last"], dtype=torch.long).unsqueeze(-1), persistent=False)
        self.register_buffer("ranks", torch.arange(VOCAB), persistent=False)
        self.register_buffer("greedy_uniforms", torch.tensor([0.0] * A + [0.5] * A), persistent=False)
        self.counts = counts
        # The rows of the heads that are some attribute's bins, in order: training computes
        # these only (the padding is 44% of the rows with the default bins).
        self.register_buffer("real_rows", torch.nonzero(real.flatten()).flatten(), persistent=False)

    def encode(self, notes: Tensor) -> Tensor:
        """Raw notes [B, T, 4] -> LSTM input features [B, T, embedding + 3]."""
        pitch = torch.clamp(notes[..., 0], 0.0, 127.0).round().long()
        others = torch.log(torch.clamp(notes[..., 1:], min=0.0) + self.offsets)
        return torch.cat([self.pitch_embedding(pitch), others], dim=-1)

    def scores(self, notes: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(logits [B, T, 4, 128], hn, cn): the distributions at every position (training, eval)."""
        y, (hn, cn) = self.lstm(self.encode(notes), (h0, c0))
        logits = self.heads(self.dropout(y))
        return logits.unflatten(-1, (self.attributes, self.vocab)), hn, cn

    def training_scores(self, notes: Tensor, h0: Tensor, c0: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        """([logits [B, T, n] of each attribute's own n bins], hn, cn): what the loss reads, with
        only the real rows of the heads computed (the padded ones are constants it never sees)."""
        y, (hn, cn) = self.lstm(self.encode(notes), (h0, c0))
        rows = self.real_rows
        logits = F.linear(self.dropout(y), self.heads.weight[rows], self.heads.bias[rows])
        return list(torch.split(logits, list(self.counts), dim=-1)), hn, cn

    def forward(self, notes: Tensor, h0: Tensor, c0: Tensor, uniforms: Tensor, temperature: Tensor,
                top_p: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The graph contract: (next_note [B, 4], hn, cn, logits [B, T, 4, 128])."""
        logits, hn, cn = self.scores(notes, h0, c0)
        return self.sample(logits[:, -1], uniforms, temperature, top_p), hn, cn, logits

    def sample(self, logits: Tensor, uniforms: Tensor, temperature: Tensor, top_p: Tensor) -> Tensor:
        """Logits [B, 4, 128] of one position -> the sampled note [B, 4] (module docstring)."""
        sampling = temperature > 0
        scaled = logits / torch.clamp(temperature, min=self.temperature_floor).unsqueeze(-1)
        ranked, order = torch.topk(scaled, self.vocab, dim=-1)
        cdf = torch.cumsum(torch.softmax(ranked, dim=-1), dim=-1)
        u = torch.where(torch.cat([sampling, sampling]), uniforms, self.greedy_uniforms)
        target = (u[:, :self.attributes] * top_p).unsqueeze(-1)
        rank = torch.minimum((cdf <= target).sum(-1, keepdim=True), self.last_rank)
        chosen = ((self.ranks == rank).to(logits.dtype) * order.to(logits.dtype)).sum(-1)
        z = (chosen + u[:, self.attributes:] * self.within) * self.scale + self.shift
        value = torch.where(self.is_time, torch.exp(torch.clamp(z, max=self.max_z)) - self.time_offset,
                            torch.floor(z))
        return torch.relu(value)

    @torch.jit.export
    def zero_state(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """The (h0, c0) that starts a sequence, so callers need no shape constants of their own."""
        h = torch.zeros(self.layers, batch_size, self.hidden, dtype=self.scale.dtype)
        return h, torch.zeros_like(h)
