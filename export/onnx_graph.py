"""ONNX artifact: one graph (an ONNX LSTM node, the chain of heads and draws, no control flow),
the LSTM state as explicit inputs/outputs, batch and time dynamic on every tensor, the spec in
metadata_props, checked with onnx.checker's full check."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import onnx
import torch

from mpx.runtime import integrity
from mpx.runtime.contract import FIXED_AXES, INPUTS, OUTPUTS, SPEC_KEY, dynamic_axes, example_inputs
from mpx.runtime.spec import ModelSpec
from mpx.train.model import NoteLSTM


def build(model: NoteLSTM, spec: ModelSpec, opset: int) -> onnx.ModelProto:
    """Export with torch's TorchScript-based exporter, which maps nn.LSTM onto one ONNX LSTM
    node (the torch.export-based one lowers it into many ops). Names and dynamic axes come from
    the one declaration of the contract (mpx.runtime.contract)."""
    model = model.eval()
    # example sizes only: both axes are declared dynamic
    example = tuple(torch.from_numpy(a) for a in example_inputs(spec.layers, spec.hidden, batch=2, time=5))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The exporter warns that it is the legacy one, and that LSTM batch sizes may be
        # fixed unless h0/c0 are graph inputs; they are, and the tests run B = 1, 4, 64.
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, buffer, dynamo=False,
                          opset_version=opset, input_names=list(INPUTS),
                          output_names=list(OUTPUTS), dynamic_axes=dynamic_axes(),
                          do_constant_folding=True)
    proto = onnx.load_from_string(buffer.getvalue())
    declared_shapes(proto)
    set_spec(proto, spec)
    proto.producer_name = "mpx"
    onnx.checker.check_model(proto, full_check=True)
    return proto


def declared_shapes(proto: onnx.ModelProto) -> None:
    """Every axis the contract fixes (attribute, bin, control, ...) as a number on the graph's
    inputs and outputs: the exporter leaves some symbolic (logits' attribute axis comes out of a
    Concat as "Concatlogits_dim_2"), and a consumer reading the graph's signature should see
    [B, T, 4, 128]."""
    declared = {**INPUTS, **OUTPUTS}
    for value in [*proto.graph.input, *proto.graph.output]:
        for dim, axis in zip(value.type.tensor_type.shape.dim, declared[value.name]):
            if axis in FIXED_AXES:
                dim.Clear()
                dim.dim_value = FIXED_AXES[axis]


def set_spec(proto: onnx.ModelProto, spec: ModelSpec) -> None:
    for prop in list(proto.metadata_props):
        if prop.key == SPEC_KEY:
            proto.metadata_props.remove(prop)
    entry = proto.metadata_props.add()
    entry.key, entry.value = SPEC_KEY, spec.to_json()


def save(proto: onnx.ModelProto, path: Path) -> None:
    """Serialised in memory first (as the TorchScript writer), sealed with its checksum
    (runtime/integrity.py), then written with plain file I/O: a full disk is one OSError, never
    a half-written file left by a library's writer."""
    data = integrity.seal_onnx(proto.SerializeToString(), str(path))
    with open(path, "wb") as fh:
        fh.write(data)
