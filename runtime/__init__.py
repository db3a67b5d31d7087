"""mpx.runtime: the torch-free core. MIDI codec, contract, spec, formats, backends, generation.

    from mpx.runtime import load
    gen = load("music_producter.onnx")            # any format (runtime/formats.py); None = the bundled ONNX model
    notes = gen.generate(primer, 256, seed=0)     # [256, 4]: pitch, step, duration, velocity
    session = gen.session(seed=0)                 # the streams' state, stepped note by note (runtime/session.py)
"""
from .artifacts import bundled, load
from .backends import OnnxBackend, TorchScriptBackend, zero_state
from .formats import open_backend
from .config import ModelConfig
from .contract import Outputs
from .errors import ArtifactError, MidiError, MpxError, OptionsError, SpecError
from .generate import GenerationOptions, Generator, Rollout, Take
from .midi import read_notes, write_midi
from .notes_csv import read_csv, write_csv
from . import bins, formats, notes, sampling
from .rng import uniforms
from .session import Session
from .spec import ModelSpec, Sampling

__all__ = [
    "ArtifactError", "GenerationOptions", "bins", "formats", "Generator", "MidiError", "ModelConfig", "ModelSpec",
    "MpxError", "notes", "OnnxBackend", "OptionsError", "Outputs", "Rollout", "Sampling", "sampling", "Session",
    "SpecError", "Take", "TorchScriptBackend", "bundled", "load", "open_backend", "read_csv", "read_notes",
    "uniforms", "write_csv", "write_midi", "zero_state",
]
