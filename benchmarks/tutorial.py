"""The reference: the seed notebook's way of loading, training and generating, re-implemented.

The seed was a PyTorch port of TensorFlow's "Generate music with an RNN" tutorial. The
benchmarks time mpx against this file, so it keeps the seed's choices even where mpx changed
them, and it keeps the seed's bugs where they do not change the speed; each is marked `SEED:`.
Nothing here is used by mpx itself.

- load_notes:    parse files one by one with pretty_midi, grow one array with np.append
                 (quadratic: every file copies everything loaded before it).
- train_batches: a Dataset of 25-note windows + the next note, DataLoader(batch_size=64,
                 shuffle=False), LSTM(3, 128) read at its last time step only, SGD.
                 One supervised prediction per window.
- generate:      for every new note, re-run the model over the last 25 notes from a zero state,
                 sample the next note, np.delete the window's first note and np.append the new
                 one. Run on mpx's own network (contract v2), so only the loop is compared.
"""
from __future__ import annotations

import collections
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pretty_midi
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mpx.runtime import controls as control_rules
from mpx.runtime.contract import UNIFORMS

NO_CONTROLS = torch.from_numpy(control_rules.unset(1))
NO_GIVEN = torch.full((1, 4), -1.0)

SEQ_LENGTH = 25
VOCAB_SIZE = 128
BATCH_SIZE = 64
LEARNING_RATE = 0.005
KEY_ORDER = ("pitch", "step", "duration")
# SEED: the notebook's loss weights (the TF tutorial used 0.05 / 1.0 / 1.0).
LOSS_WEIGHTS = {"pitch": 0.1, "step": 20.0, "duration": 1.0}


# -- loading ---------------------------------------------------------------------------------
def midi_to_notes(midi_file: str | Path) -> np.ndarray:
    """The tutorial's midi_to_notes: notes of the first instrument, sorted by start.

    The tutorial builds a pandas DataFrame from the columns; pandas is not a dependency here,
    so the same columns are stacked into an array [N, 3] = (pitch, step, duration).
    """
    pm = pretty_midi.PrettyMIDI(str(midi_file))
    instrument = pm.instruments[0]  # SEED: only the first instrument, drums included
    notes = collections.defaultdict(list)
    sorted_notes = sorted(instrument.notes, key=lambda note: note.start)
    prev_start = sorted_notes[0].start
    for note in sorted_notes:
        start, end = note.start, note.end
        notes["pitch"].append(note.pitch)
        notes["start"].append(start)
        notes["end"].append(end)
        notes["step"].append(start - prev_start)
        notes["duration"].append(end - start)
        prev_start = start
    return np.stack([np.asarray(notes[key], dtype=np.float64) for key in KEY_ORDER], axis=1)


def load_notes(files: Sequence[str | Path]) -> tuple[np.ndarray, int]:
    """All files' notes in one array, grown with np.append as the notebook does.

    Returns (notes [N, 3] float64, files skipped). SEED: the notebook has no error handling
    and stops at the first unreadable file; here such a file is skipped and counted so the
    benchmark can finish on a real corpus.
    """
    all_notes = np.empty((0, 3))
    skipped = 0
    for f in files:
        try:
            notes = midi_to_notes(f)
        except Exception:  # noqa: BLE001 -- pretty_midi raises many types on bad files
            skipped += 1
            continue
        all_notes = np.append(all_notes, notes, axis=0)  # SEED: copies all notes so far, per file
    return all_notes, skipped


# -- training --------------------------------------------------------------------------------
class SequenceDataset(Dataset):
    """Window i = notes[i : i + 25] (pitch / 128), label = the note after it (raw).

    SEED: the notes of all files are one array, so windows run across file boundaries.
    """

    def __init__(self, notes: np.ndarray, seq_length: int = SEQ_LENGTH) -> None:
        self.notes = notes
        self.seq_length = seq_length

    def __len__(self) -> int:
        return len(self.notes) - self.seq_length

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        sequence = self.notes[idx: idx + self.seq_length + 1]
        inputs = sequence[:-1] / np.array([VOCAB_SIZE, 1.0, 1.0])  # the tutorial's scale_pitch
        label = sequence[-1]
        return torch.tensor(inputs, dtype=torch.float32), torch.tensor(label, dtype=torch.float32)


class MusicRNN(nn.Module):
    """LSTM(3, hidden) read at its last time step; three heads."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, hidden, batch_first=True)
        self.pitch = nn.Linear(hidden, VOCAB_SIZE)
        self.step = nn.Linear(hidden, 1)
        self.duration = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out, _ = self.lstm(x)
        last = out[:, -1]  # one prediction per window: the other 24 positions are not trained
        return {
            # SEED: a sigmoid before CrossEntropyLoss squashes the logits into (0, 1).
            "pitch": torch.sigmoid(self.pitch(last)),
            "step": self.step(last).squeeze(-1),
            "duration": self.duration(last).squeeze(-1),
        }


def mse_with_positive_pressure(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    mse = (y_true - y_pred) ** 2
    positive_pressure = 10 * torch.clamp(-y_pred, min=0.0)
    return torch.mean(mse + positive_pressure)


def loss_fn(outputs: dict[str, torch.Tensor], label: torch.Tensor) -> torch.Tensor:
    ce = nn.functional.cross_entropy(outputs["pitch"], label[:, 0].long())
    step = mse_with_positive_pressure(label[:, 1], outputs["step"])
    duration = mse_with_positive_pressure(label[:, 2], outputs["duration"])
    return (LOSS_WEIGHTS["pitch"] * ce + LOSS_WEIGHTS["step"] * step
            + LOSS_WEIGHTS["duration"] * duration)


def make_training(notes: np.ndarray, hidden: int = 128, seed: int = 0
                  ) -> tuple[MusicRNN, torch.optim.Optimizer, DataLoader]:
    torch.manual_seed(seed)
    model = MusicRNN(hidden)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    loader = DataLoader(SequenceDataset(notes), batch_size=BATCH_SIZE, shuffle=False)
    return model, optimizer, loader


def train_batches(notes: np.ndarray, hidden: int = 128) -> Iterator[int]:
    """Train batch after batch, epoch after epoch; yield each batch's supervised predictions."""
    model, optimizer, loader = make_training(notes, hidden)
    model.train()
    while True:
        for x, label in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), label)
            loss.backward()
            optimizer.step()
            yield len(x)  # one prediction per window: its last position


# -- generation ------------------------------------------------------------------------------
def predict_next_note(notes: np.ndarray, model: nn.Module, temperature: torch.Tensor,
                      top_p: torch.Tensor) -> tuple[float, float, float, float]:
    """One note from a window [25, 4]: the whole window from a zero state, last position sampled.

    The tutorial's model had a pitch head sampled with torch.multinomial and point-valued step
    and duration heads. mpx's model (contract v3) samples all four attributes inside its
    forward from uniforms it is given, so this draws those uniforms with torch.rand where the
    tutorial called torch.multinomial, and calls the same forward mpx's eager backend calls
    (per-row sampling [1, 4]; controls not given, no attribute given: the tutorial had neither).
    """
    inputs = torch.tensor(notes[None], dtype=torch.float32)
    h0, c0 = model.zero_state(1)  # a new zero state for every note
    uniforms = torch.rand(1, UNIFORMS)
    with torch.no_grad():
        next_note, _, _, _ = model(inputs, h0, c0, uniforms, temperature.view(1, -1), top_p.view(1, -1),
                                   NO_CONTROLS, NO_GIVEN)
    pitch, step, duration, velocity = next_note[0].tolist()
    return pitch, step, duration, velocity


def generate(model: nn.Module, primer: np.ndarray, num_predictions: int,
             temperature: Sequence[float] = (1.0,) * 4, top_p: Sequence[float] = (1.0,) * 4,
             seed: int = 0, seq_length: int = SEQ_LENGTH) -> np.ndarray:
    """The tutorial's generation loop -> generated notes [n, 6]
    (pitch, step, duration, velocity, start, end).

    `model` is an mpx NoteLSTM (graph contract v3: model(notes, h0, c0, uniforms, temperature,
    top_p, controls, given) -> (next_note, hn, cn, logits)), so the loop is compared on the same network mpx
    runs, with the same per-attribute sampling parameters; only the loop differs. mpx's model
    encodes the raw notes inside the graph, so the window holds raw notes. SEED: the notebook
    divided the primer's pitches by 128 but appended each generated pitch raw, so after the
    first note the model saw a mix of scales; it costs the same time.
    """
    torch.manual_seed(seed)
    model.eval()
    temperature_t = torch.tensor(temperature, dtype=torch.float32)
    top_p_t = torch.tensor(top_p, dtype=torch.float32)
    input_notes = np.asarray(primer[-seq_length:], dtype=np.float64)
    generated_notes = []
    prev_start = 0.0
    for _ in range(num_predictions):
        input_note = predict_next_note(input_notes, model, temperature_t, top_p_t)
        start = prev_start + input_note[1]
        end = start + input_note[2]
        generated_notes.append((*input_note, start, end))
        input_notes = np.delete(input_notes, 0, axis=0)
        input_notes = np.append(input_notes, np.expand_dims(input_note, 0), axis=0)
        prev_start = start
    return np.asarray(generated_notes)
