"""What mpx can tell a musician about notes: the tempo a seed is played at (so a written MIDI
file's bars mean something in a DAW), and a continuation that fell into a loop (greedy
decoding's usual fate). numpy only; notes are float32 [N, 4] (runtime/notes.py)."""
from __future__ import annotations

import numpy as np

from .notes import PITCH, STEP, DURATION, VELOCITY, note_name
from .report import chord_index

FRAME = 0.01            # s: resolution of the onset envelope
TEMPO_RANGE = (40.0, 240.0)   # bpm a beat is looked for in
PRIOR_BPM, PRIOR_OCTAVES = 120.0, 1.0   # the beat a listener hears, at equal evidence (librosa's prior)
MIN_ONSETS = 8          # fewer chords than this tell no tempo


def chord_onsets(notes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(onset time of each chord in s, its loudness: the sum of its velocities); chords as the
    generation report groups them (runtime/report.py)."""
    notes = np.asarray(notes, np.float64).reshape(-1, 4)
    onsets, index = chord_index(notes[:, STEP])
    first = np.diff(index, prepend=-1) > 0
    return onsets[first], np.bincount(index, weights=notes[:, VELOCITY], minlength=int(first.sum()))


def estimate_tempo(notes: np.ndarray) -> float | None:
    """The beat of `notes` in bpm (40..240), or None when they are too few to tell.

    The onsets, weighted by loudness, make an envelope at 10 ms; its autocorrelation peaks at
    the beat period and its multiples; a log-normal preference around 120 bpm (one octave wide)
    picks among them, as a listener tapping along would; a parabola through the peak refines it.
    """
    onsets, weights = chord_onsets(notes)
    if len(onsets) < MIN_ONSETS or onsets[-1] - onsets[0] < 4 * 60 / TEMPO_RANGE[1]:
        return None
    frames = np.rint((onsets - onsets[0]) / FRAME).astype(int)
    envelope = np.zeros(frames[-1] + 1)
    np.add.at(envelope, frames, weights)
    kernel = np.exp(-0.5 * (np.arange(-6, 7) * FRAME / 0.02) ** 2)  # 20 ms of timing spread
    envelope = np.convolve(envelope, kernel, mode="same")
    envelope -= envelope.mean()
    lags = np.arange(int(60 / TEMPO_RANGE[1] / FRAME), int(60 / TEMPO_RANGE[0] / FRAME) + 1)
    lags = lags[lags < len(envelope) // 2]
    if len(lags) < 3:
        return None
    spectrum = np.fft.rfft(envelope, 2 * len(envelope))
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[: len(envelope)]
    acf = acf / np.maximum(len(envelope) - np.arange(len(envelope)), 1)  # unbiased: long lags see fewer frames
    bpm = 60 / (lags * FRAME)
    score = np.maximum(acf[lags], 0) * np.exp(-0.5 * (np.log2(bpm / PRIOR_BPM) / PRIOR_OCTAVES) ** 2)
    if not score.max() > 0:
        return None
    k = int(np.argmax(score))
    lag = float(lags[k])
    if 0 < k < len(lags) - 1:  # the peak between frames
        a, b, c = acf[lags[k - 1]], acf[lags[k]], acf[lags[k + 1]]
        if a - 2 * b + c < 0:
            lag += 0.5 * (a - c) / (a - 2 * b + c)
    return float(np.clip(60 / (lag * FRAME), *TEMPO_RANGE))


def loop_at_the_end(notes: np.ndarray, window: int = 64) -> str | None:
    """A description of the loop the last `window` notes of a continuation repeat (at most two
    pitches and two step lengths), or None. Greedy decoding ends this way: the likeliest note
    after a note is the same every time."""
    notes = np.asarray(notes, np.float64).reshape(-1, 4)
    if len(notes) < window // 2:
        return None
    tail = notes[-window:]
    pitches, steps = np.unique(tail[:, PITCH]), np.unique(np.round(tail[:, STEP], 4))
    if len(pitches) > 2 or len(steps) > 2:
        return None
    names = " and ".join(note_name(int(p)) for p in pitches)
    return (f"the last {len(tail)} notes repeat {names}, one every {float(np.median(tail[:, STEP])):.2f} s, "
            f"held {float(np.median(tail[:, DURATION])):.2f} s")
