"""mpx.runtime: the torch-free core. MIDI codec, spec, sampler, backends, generation.

    from mpx.runtime import load
    gen = load("music_producter.onnx")            # or .pt, .safetensors; None = the bundled ONNX model
    notes = gen.generate(primer, 256, temperature=1.0, seed=0)
"""
from .artifacts import bundled, load
from .backends import OnnxBackend, TorchScriptBackend, open_backend, zero_state
from .config import ModelConfig
from .contract import Outputs
from .errors import ArtifactError, MidiError, MpxError, OptionsError, SpecError
from .generate import Generator
from .midi import read_notes, write_midi
from .notes_csv import read_csv, write_csv
from .sampling import GenerationOptions, Sampler
from .spec import ModelSpec

__all__ = [
    "ArtifactError", "GenerationOptions", "Generator", "MidiError", "ModelConfig", "ModelSpec",
    "MpxError", "OnnxBackend", "OptionsError", "Outputs", "Sampler", "SpecError",
    "TorchScriptBackend", "bundled", "load", "open_backend", "read_csv", "read_notes",
    "write_csv", "write_midi", "zero_state",
]
