"""Standalone model files: a NATNet as weights (safetensors) + its description (JSON), and ONNX.

A model folder holds ``model.safetensors`` (weights only: loading can never run code),
``net.subnet`` (NAT's subnet format), ``net.config`` (search space, class count: enough to rebuild the
network with `load_model`), and optionally ``model.onnx``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from nat.errors import CheckpointError
from nat.files import write_atomic, write_text_atomic
from nat.space.definition import SearchSpace
from nat.space.subnet import Subnet
from nat.supernet.static import StaticMobileNetV3


def save_model(
    model: StaticMobileNetV3, folder: str | Path, metrics: dict[str, Any] | None = None, onnx: bool = False
) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_atomic(folder / "model.safetensors", lambda tmp: save_file(state, str(tmp)))
    write_text_atomic(folder / "net.subnet", json.dumps(model.subnet.to_dict()))
    write_text_atomic(
        folder / "net.config", json.dumps({**model.config(), "metrics": metrics or {}}, indent=1)
    )
    if onnx:
        export_onnx(model, folder / "model.onnx")
    return folder


def load_model(folder: str | Path) -> StaticMobileNetV3:
    folder = Path(folder)
    try:
        config = json.loads((folder / "net.config").read_text())
        state = load_file(str(folder / "model.safetensors"))
    except FileNotFoundError as exc:
        raise CheckpointError(
            f"{folder} is not a nat model folder (missing {Path(exc.filename).name})"
        ) from None
    except (json.JSONDecodeError, OSError, ValueError) as exc:
        raise CheckpointError(f"{folder}: damaged model files ({exc})") from None
    space = SearchSpace.model_validate(config["space"])
    model = StaticMobileNetV3(space, Subnet.from_dict(config["subnet"], space), int(config["num_classes"]))
    model.load_state_dict(state)
    return model.eval()


def export_onnx(model: StaticMobileNetV3, path: str | Path) -> Path:
    """ONNX export with a dynamic batch dimension (needs the ``onnx`` extra)."""
    model = model.eval()
    x = torch.randn(1, 3, model.subnet.r, model.subnet.r)
    torch.onnx.export(
        model,
        (x,),
        str(path),
        input_names=["images"],
        output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return Path(path)
