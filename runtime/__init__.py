"""mpx.runtime: the torch-free core. MIDI codec, contract, spec, backends, generation.

    from mpx.runtime import load
    gen = load("music_producter.onnx")            # or .pt, .safetensors; None = the bundled ONNX model
    notes = gen.generate(primer, 256, seed=0)     # [256, 4]: pitch, step, duration, velocity
"""
from .artifacts import bundled, load
from .backends import OnnxBackend, TorchScriptBackend, open_backend, zero_state
from .config import ModelConfig
from .contract import Outputs
from .errors import ArtifactError, MidiError, MpxError, OptionsError, SpecError
from .generate import GenerationOptions, Generator
from .midi import read_notes, write_midi
from .notes_csv import read_csv, write_csv
from . import bins
from .rng import uniforms
from .spec import ModelSpec, Sampling

__all__ = [
    "ArtifactError", "GenerationOptions", "bins", "Generator", "MidiError", "ModelConfig", "ModelSpec",
    "MpxError", "OnnxBackend", "OptionsError", "Outputs", "Sampling", "SpecError",
    "TorchScriptBackend", "bundled", "load", "open_backend", "read_csv", "read_notes",
    "uniforms", "write_csv", "write_midi", "zero_state",
]
