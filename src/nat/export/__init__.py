"""Deployable outputs: model folders (safetensors + OFA/NAT net.config + model.json), ONNX, NAT's models."""

from nat.export.model_files import export_onnx, load_model, model_info, read_model_info, save_model
from nat.export.natnet import NATNet, build_natnet, load_natnet, profile_network, read_weights
from nat.export.ofa_config import net_config, subnet_from_net_config
from nat.export.transform import model_transform

__all__ = [
    "NATNet",
    "build_natnet",
    "export_onnx",
    "load_model",
    "load_natnet",
    "model_info",
    "model_transform",
    "net_config",
    "profile_network",
    "read_model_info",
    "read_weights",
    "save_model",
    "subnet_from_net_config",
]
