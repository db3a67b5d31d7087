"""The bundled model: checkpoint, TorchScript and ONNX artifacts, model card (package data)."""
