"""Deployable outputs: standalone model folders (safetensors + subnet JSON) and ONNX."""

from nat.export.model_files import export_onnx, load_model, save_model

__all__ = ["export_onnx", "load_model", "save_model"]
