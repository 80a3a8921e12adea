"""``nat predict MODEL IMAGE...``: classify image files with a delivered model, as it was evaluated.

Thin over the library: `nat.load_model` (the network, in eval mode) and `nat.model_transform` (the
preprocessing its test figure was measured with), so a file is classified exactly as in ``nat eval``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nat.cli.args import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="classify image files with a model folder",
        description="Classify image files with a model folder written by nat (a run's models/NAME, or "
        "`nat export --out`): each file's most likely classes, by the class names the model was "
        "trained with, preprocessed as the model was evaluated.",
    )
    parser.add_argument("model", type=Path, metavar="MODEL_DIR", help="a nat model folder")
    parser.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--top", type=positive_int, default=1, help="classes to show per image (default 1)")
    parser.add_argument("--json", action="store_true", help="one JSON object per image")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from nat.data.images import decode_image
    from nat.errors import DataError
    from nat.export import load_model
    from nat.export.transform import model_transform

    model = load_model(args.model)
    to_input = model_transform(args.model)
    names = model.info.get("class_names") or [str(i) for i in range(model.num_classes)]
    channels = int((model.info.get("preprocessing") or {}).get("channels", 3))
    for path in args.images:
        if not path.is_file():
            raise DataError(f"image not found: {path}")
        try:
            image = decode_image(str(path), channels)
        except OSError as exc:
            raise DataError(f"{path} is not an image nat can read ({exc})") from None
        with torch.no_grad():
            probs = model(to_input(image)[None]).softmax(dim=1)[0]
        top = probs.topk(min(args.top, len(names)))
        best = [(names[i], float(p)) for p, i in zip(top.values, top.indices, strict=True)]
        if args.json:
            print(json.dumps({"image": str(path), "classes": [{"name": n, "p": p} for n, p in best]}))
        else:
            print(f"{path}: " + ", ".join(f"{n} ({100 * p:.1f}%)" for n, p in best))
    return 0
