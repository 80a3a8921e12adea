"""Bad inputs through every command: each ends with a non-zero exit, no traceback, a last line
``nat COMMAND: error: ...`` that says what is wrong, and every run folder it was given unchanged.

The cases are a table: ``(id, argv, expected text)``, with ``{run}`` (a finished search run folder),
``{model}`` (one of its model folders), ``{pt}`` (a pretraining folder), ``{tmp}`` (an empty scratch
folder) and the files made by `bad_files` substituted into ``argv``.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from nat.cli import main

TINY = [
    "--set", "initial_samples=5", "--set", "iterations=1", "--set", "candidates_per_iteration=2",
    "--set", "adaptation.max_steps=2", "--set", "nsga3.pop_size=10", "--set", "nsga3.generations=2",
    "--set", "evaluation.calibration_images=32", "--set", "data.val_size=100", "--set", "finalize.models=1",
]  # fmt: skip


def digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad")
    run = root / "run"
    assert main(["search", "--preset", "smoke", "--out", str(run), *TINY]) == 0
    (model,) = json.loads((run / "models.json").read_text())
    pt = root / "pt"
    pt_config = root / "pretrain.yaml"
    pt_config.write_text(
        yaml.safe_dump(
            {
                "data": {"dataset": "digits", "train_batch_size": 64, "eval_batch_size": 200},
                "space": "micro",
                "train_resolutions": [16],
                "calibration_images": 16,
                "val_images": 0,
                "test_eval": False,
                "phases": [{"name": "full", "epochs": 0.02, "lr": 0.05}],
            }
        )
    )
    assert main(["pretrain", "--config", str(pt_config), "--out", str(pt), "--no-progress"]) == 0
    files = bad_files(root)
    damaged = damaged_copies(root, run, run / "models" / model["name"])
    return {
        "run": str(run),
        "model": str(run / "models" / model["name"]),
        "pt": str(pt),
        "pt_config": str(pt_config),
        "tmp": str(root / "scratch"),
        **{k: str(v) for k, v in files.items()},
        **{k: str(v) for k, v in damaged.items()},
    }


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    path.write_text(json.dumps(change(data)))


def damaged_copies(root: Path, run: Path, model: Path) -> dict[str, Path]:
    """Copies of the run folder and of one model folder, each damaged in one way, and files that are
    wrong in the ways hand-edited or half-copied run and model files are."""
    import shutil

    out = root / "damaged"
    made: dict[str, Path] = {}

    def run_copy(name: str, file: str, change) -> None:
        shutil.copytree(run, out / name, ignore=shutil.ignore_patterns(".lock"))
        _edit_json(out / name / file, change)
        made[name] = out / name

    def drop_madds(entries: list) -> list:
        entries[0].pop("madds")
        return entries

    def madds_text(entries: list) -> list:
        entries[0]["madds"] = "big"
        return entries

    run_copy("run_models_field", "models.json", drop_madds)
    run_copy("run_models_type", "models.json", madds_text)
    run_copy("run_models_dict", "models.json", lambda entries: {"models": entries})
    run_copy("run_state_history", "state.json", lambda state: {**state, "history": "iteration 1"})

    def model_copy(name: str, drop: str | None = None, change=None) -> None:
        shutil.copytree(model, out / name)
        if drop:
            (out / name / drop).unlink()
        if change:
            _edit_json(out / name / "model.json", change)
        made[name] = out / name

    model_copy("model_no_weights", drop="model.safetensors")
    model_copy("model_no_json", drop="model.json")

    def resolution_text(info: dict) -> dict:
        info["preprocessing"]["resolution"] = "16px"
        return info

    model_copy("model_json_type", change=resolution_text)
    model_copy("model_seed_type", change=lambda info: {**info, "provenance": {"seed": [0], "dataset": "x"}})
    release = out / "release_resolution"  # a NAT release folder whose net.config states no usable size
    release.mkdir(parents=True)
    config = json.loads((model / "net.config").read_text())
    (release / "net.config").write_text(json.dumps({**config, "img_size": "large"}))
    made["release_resolution"] = release
    broken = dict(config, blocks=list(config["blocks"]))
    block = json.loads(json.dumps(broken["blocks"][2]))
    block["mobile_inverted_conv"]["in_channels"] += 8
    block["shortcut"] = None
    broken["blocks"][2] = block
    made["chain_config"] = out / "chain.config"
    made["chain_config"].write_text(json.dumps(broken))
    tables = {
        "table_entries_list": {"format": "nat.latency_table/1", "entries": [1, 2]},
        "table_calibration_list": {"format": "nat.latency_table/1", "entries": {}, "calibration": [1]},
        "table_scale_text": {"format": "nat.latency_table/1", "entries": {}, "calibration": {"scale": "x"}},
    }
    for name, table in tables.items():
        made[name] = out / f"{name}.yaml"
        made[name].write_text(yaml.safe_dump(table))
    images = out / "truncated_images"  # one class whose only images are cut short
    for cls, cut in (("good", False), ("cut", True)):
        (images / cls).mkdir(parents=True)
        for k in range(3):
            path = images / cls / f"{k}.png"
            Image.new("RGB", (32, 32), (40 * k, 90, 160)).save(path)
            if cut:
                path.write_bytes(path.read_bytes()[:60])
    made["truncated_images"] = images
    return made


def bad_files(root: Path) -> dict[str, Path]:
    """Files that are wrong in the ways users get them wrong."""
    out = root / "files"
    out.mkdir()
    made = {
        "binary": out / "binary.yaml",
        "not_mapping": out / "list.yaml",
        "broken_yaml": out / "broken.yaml",
        "typo_yaml": out / "typo.yaml",
        "bad_json": out / "bad.subnet",
        "wrong_subnet": out / "wrong.subnet",
        "empty": out / "empty.pth",
        "garbage": out / "garbage.pth",
        "pickle_as_safetensors": out / "code.safetensors",
        "code_pickle": out / "code.pth",
        "a_file": out / "a_file",
    }
    made["binary"].write_bytes(bytes(range(256)) * 4)
    made["not_mapping"].write_text("- seed\n- 1\n")
    made["broken_yaml"].write_text("data: [unclosed\n")
    made["typo_yaml"].write_text("data: {dataset: digits}\niteratons: 3\n")
    made["bad_json"].write_text('{"ks": [3, 5')
    made["wrong_subnet"].write_text(json.dumps({"ks": [9], "e": [3], "d": [1], "r": 1, "w": 3.0}))
    made["empty"].write_bytes(b"")
    made["garbage"].write_bytes(b"\x80\x04garbage that is no pickle")
    payload = {"state_dict": {"w": torch.zeros(1)}, "fn": Path}  # a class: refused by weights_only
    torch.save(payload, made["code_pickle"])
    made["pickle_as_safetensors"].write_bytes(pickle.dumps({"x": Path("/")}))
    made["a_file"].write_text("not a folder")
    (out / "a_dir").mkdir()
    made["a_dir"] = out / "a_dir"
    photos = out / "photos"  # images too large for the built-in supernet, and nothing downloaded
    for cls in ("cat", "dog"):
        (photos / cls).mkdir(parents=True)
        for k in range(3):
            Image.new("RGB", (120, 100), (30 * k, 90, 160)).save(photos / cls / f"{k}.png")
    made["photos"] = photos
    (out / "bare").mkdir()
    made["bare_subnet"] = out / "bare" / "net.subnet"  # no model.json beside it
    made["bare_subnet"].write_text(
        json.dumps({"ks": [3] * 10, "e": [3] * 10, "d": [2] * 5, "r": 224, "w": 1.0})
    )
    return made


S = ["search", "--preset", "smoke", "--out", "{tmp}/s"]
CASES: list[tuple[str, list[str], str]] = [
    # ---- nat search: configs and flags
    ("preset", ["search", "--preset", "nope", "--out", "{tmp}/x"], "unknown preset"),
    ("config-missing", ["search", "--config", "{tmp}/none.yaml", "--out", "{tmp}/x"], "not found"),
    ("config-binary", ["search", "--config", "{binary}", "--out", "{tmp}/x"], "not UTF-8 text"),
    ("config-list", ["search", "--config", "{not_mapping}", "--out", "{tmp}/x"], "must be a mapping"),
    ("config-yaml", ["search", "--config", "{broken_yaml}", "--out", "{tmp}/x"], "not valid YAML at line"),
    (
        "config-typo",
        ["search", "--config", "{typo_yaml}", "--out", "{tmp}/x"],
        "iteratons: unknown field (did you mean 'iterations'?",
    ),
    ("config-dir", ["search", "--config", "{a_dir}", "--out", "{tmp}/x"], "is a folder"),
    ("set-no-equals", [*S, "--set", "nsga3"], "KEY=VALUE"),
    ("set-negative", [*S, "--set", "iterations=-1"], "iterations"),
    ("set-not-int", [*S, "--set", "initial_samples=many"], "initial_samples"),
    ("set-section", [*S, "--set", "nsga3.pop_size.x=1"], "--set: nsga3.pop_size"),
    ("one-objective", [*S, "--set", "objectives=[top1]"], "at least 2"),
    ("unknown-objective", [*S, "--set", "objectives=[top1,flops]"], "unknown objective"),
    ("no-top1", [*S, "--set", "objectives=[madds,params]"], "must include 'top1'"),
    ("user-objective-module", [*S, "--set", "objectives=[top1,nomodule:fn]"], "cannot import module"),
    ("evolution-no-bound", [*S, "--set", "strategy=evolution"], "needs at least one constraint"),
    ("tf32-not-bool", [*S, "--set", "tf32=sometimes"], "tf32"),
    ("cudnn-benchmark-not-bool", [*S, "--set", "cudnn_benchmark=maybe"], "cudnn_benchmark"),
    ("memory-format", [*S, "--set", "memory_format=nhwc"], "memory_format: Input should be 'auto'"),
    ("distributed-timeout", [*S, "--set", "distributed_timeout_minutes=0"], "distributed_timeout_minutes"),
    ("strategy", [*S, "--set", "strategy=grid"], "strategy"),
    ("strategy-typo", [*S, "--set", "strategy=randon"], "did you mean 'random'"),
    ("max-evaluations", [*S, "--set", "max_evaluations=0"], "max_evaluations"),
    ("reevaluate-policy", [*S, "--set", "evaluation.reevaluate=some"], "evaluation.reevaluate"),
    ("reevaluate-sample", [*S, "--set", "evaluation.reevaluate_sample=0"], "evaluation.reevaluate_sample"),
    ("validation-cache", [*S, "--set", "evaluation.validation_cache_mb=-1"], "validation_cache_mb"),
    ("host-memory", [*S, "--set", "reuse_host_memory=sometimes"], "reuse_host_memory"),
    (
        "task-names",
        [*S, "--set", "data=[{{dataset: digits, name: a}}, {{dataset: mnist5k, name: a}}]"],
        "distinct",
    ),
    (
        "task-name-chars",
        [*S, "--set", "data=[{{dataset: digits, name: a/b}}, {{dataset: mnist5k}}]"],
        "task name",
    ),
    ("task-list-empty", [*S, "--set", "data=[]"], "list of tasks is empty"),
    ("adaptation-distill", [*S, "--set", "adaptation.distill=sometimes"], "adaptation.distill"),
    ("distill-every", [*S, "--set", "adaptation.distill_every=2"], "set distill: true as well"),
    ("finalize-compile", [*S, "--set", "finalize.compile=nope"], "unknown torch.compile backend 'nope'"),
    (
        "task-list-item",
        [*S, "--set", "data=[{{dataset: digits}}, {{dataset: nope}}]"],
        "data.1.dataset: unknown",
    ),
    ("objective-top1-task", [*S, "--set", "objectives=[top1,madds,top1:digits]"], "write 'top1'"),
    (
        "many-task-evolution",
        [
            *S,
            "--set",
            "data=[{{dataset: digits}}, {{dataset: mnist5k}}]",
            "--set",
            "strategy=evolution",
            "--set",
            "constraints.madds=1e7",
        ],
        "many-task run",
    ),  # fmt: skip
    ("bound-negative", [*S, "--set", "constraints.madds=-1"], "positive"),
    ("bound-top1", [*S, "--set", "constraints.top1=0.5"], "constrain complexity objectives only"),
    ("dataset", [*S, "--set", "data.dataset=nope"], "unknown dataset"),
    ("surrogate", [*S, "--set", "surrogate.models=[svm]"], "unknown surrogate"),
    ("selection", [*S, "--set", "candidate_selection=best"], "candidate_selection"),
    ("space-preset", [*S, "--set", "space=huge"], "search space"),
    ("supernet-missing", [*S, "--set", "supernet=/nonexistent/ofa.pth"], "not found"),
    ("supernet-dir", [*S, "--set", "supernet={a_dir}"], "a_dir"),
    ("supernet-empty", [*S, "--set", "supernet={empty}", "--set", "space=null"], "empty.pth"),
    ("supernet-garbage", [*S, "--set", "supernet={garbage}", "--set", "space=null"], "garbage.pth"),
    ("supernet-code", [*S, "--set", "supernet={code_pickle}", "--set", "space=null"], "never pickled code"),
    ("supernet-renamed", [*S, "--set", "supernet={pickle_as_safetensors}", "--set", "space=null"], "code"),
    ("builtin", [*S, "--set", "supernet=builtin:nope"], "no built-in supernet"),
    ("out-file", ["search", "--preset", "smoke", "--out", "{a_file}"], "not a folder"),
    ("out-proc", ["search", "--preset", "smoke", "--out", "/proc/nat-run"], "/proc/nat-run"),
    ("no-out", ["search", "--preset", "smoke"], "--out DIR is required"),
    ("no-config", ["search", "--out", "{tmp}/x"], "give --data NAME (and --root DIR)"),
    (
        "search-data-unknown",
        ["search", "--data", "nope", "--out", "{tmp}/x"],
        "data: dataset: unknown dataset 'nope'",
    ),
    ("data-no-root", ["search", "--data", "folder", "--out", "{tmp}/x"], "--root PATH on the command line"),
    (
        "data-root-missing",
        ["search", "--data", "folder", "--root", "{tmp}/none", "--out", "{tmp}/x"],
        "does not exist",
    ),
    (
        "data-big-images",
        ["search", "--data", "folder", "--root", "{photos}", "--out", "{tmp}/x"],
        "nat supernet download",
    ),
    (
        "supernet-unknown",
        ["supernet", "download", "ofa_mbv3_w2", "--to", "{tmp}/sn"],
        "unknown supernet 'ofa_mbv3_w2'",
    ),
    ("predict-no-image", ["predict", "{model}", "{tmp}/none.png"], "image not found"),
    ("profile-bare-subnet", ["profile", "{bare_subnet}"], "give --space"),
    ("resume-nowhere", ["search", "--resume", "{tmp}/nowhere"], "not a nat run directory"),
    (
        "resume-and-config",
        ["search", "--resume", "{run}", "--preset", "smoke"],
        "drop --config/--preset/--out",
    ),
    ("resume-seed", ["search", "--resume", "{run}", "--set", "seed=5"], "another seed"),
    ("resume-lr", ["search", "--resume", "{run}", "--set", "adaptation.lr=0.5"], "another adaptation.lr"),
    ("existing-run", ["search", "--preset", "smoke", "--out", "{run}"], "already holds a run"),
    ("device", [*S, "--set", "device=gpu"], "gpu"),
    ("cuda-absent", [*S, "--set", "device=cuda"], "CUDA is not available"),
    # ---- nat profile
    ("profile-missing", ["profile", "{tmp}/none.subnet"], "not found"),
    ("profile-binary", ["profile", "{binary}"], "not UTF-8 text"),
    ("profile-json", ["profile", "{bad_json}"], "not valid JSON"),
    ("profile-invalid", ["profile", "{wrong_subnet}"], "wrong.subnet"),
    ("profile-classes", ["profile", "{model}/net.subnet", "--num-classes", "0"], "num-classes"),
    ("profile-huge-classes", ["profile", "{model}/net.subnet", "--num-classes", str(10**12)], "plausible"),
    (
        "pretrain-device",
        ["pretrain", "--config", "{pt_config}", "--out", "{tmp}/p2", "--device", "gpu"],
        "gpu",
    ),
    ("search-latency-bound", [*S, "--set", "constraints.latency=5"], "add 'latency' to objectives"),
    ("search-impossible", [*S, "--set", "constraints.madds=1000"], "cannot be met"),
    (
        "search-one-px",
        [*S, "--set", "space={{resolutions: [1]}}"],
        "stride",
    ),
    # ---- nat data
    ("data-unknown", ["data", "info", "nope"], "unknown dataset"),
    ("data-root", ["data", "info", "cifar10", "--root", "{tmp}/nowhere"], "nowhere"),
    ("data-empty-folder", ["data", "info", "folder", "--root", "{a_dir}"], "a_dir"),
    # ---- nat pretrain
    ("pretrain-missing", ["pretrain", "--config", "{tmp}/none.yaml", "--out", "{tmp}/p"], "not found"),
    ("pretrain-binary", ["pretrain", "--config", "{binary}", "--out", "{tmp}/p"], "not UTF-8 text"),
    ("pretrain-typo", ["pretrain", "--config", "{typo_yaml}", "--out", "{tmp}/p"], "unknown field"),
    ("pretrain-no-out", ["pretrain", "--config", "{pt_config}"], "give --config FILE and --out DIR"),
    ("pretrain-resume-nowhere", ["pretrain", "--resume", "{tmp}/nowhere"], "nothing to resume"),
    ("pretrain-existing", ["pretrain", "--config", "{pt_config}", "--out", "{pt}"], "already holds"),
    ("pretrain-into-search", ["pretrain", "--config", "{pt_config}", "--out", "{run}"], "search run"),
    ("pretrain-steps", ["pretrain", "--resume", "{pt}", "--stop-after-steps", "-1"], "stop-after-steps"),
    ("pretrain-resume-seed", ["pretrain", "--resume", "{pt}", "--seed", "3"], "cannot change a run"),
    # ---- nat export / report / eval
    ("export-not-run", ["export", "{tmp}"], "not a nat run directory"),
    ("export-models", ["export", "{run}", "--models", "-1"], "--models"),
    ("export-epochs", ["export", "{run}", "--finetune-epochs", "-2"], "--finetune-epochs"),
    ("export-lr", ["export", "{run}", "--lr", "0"], "--lr"),
    ("export-into-run", ["export", "{run}", "--out", "{run}"], "--out is the run folder"),
    ("export-compile", ["export", "{run}", "--compile", "nope"], "unknown torch.compile backend 'nope'"),
    ("export-pretrain", ["export", "{pt}"], "not a nat run directory"),
    ("report-not-run", ["report", "{tmp}"], "not a nat run directory"),
    ("report-pretrain", ["report", "{pt}"], "not a nat run directory"),
    ("eval-missing", ["eval", "{tmp}/none", "--data", "digits"], "model folder not found"),
    ("eval-run", ["eval", "{run}", "--data", "digits"], "not a model folder"),
    ("eval-dataset", ["eval", "{model}", "--data", "nope"], "unknown dataset"),
    ("eval-split", ["eval", "{model}", "--data", "digits", "--split", "train"], "--split"),
    ("eval-batch", ["eval", "{model}", "--data", "digits", "--batch-size", "0"], "--batch-size"),
    ("eval-device", ["eval", "{model}", "--data", "digits", "--device", "tpu"], "tpu"),
    ("eval-precision", ["eval", "{model}", "--data", "digits", "--precision", "int8"], "--precision"),
    (
        "initial-samples",
        [
            *S,
            "--set",
            "space={{depths: [2], kernel_sizes: [3], expand_ratios: [3]}}",
            "--set",
            "initial_samples=500",
        ],
        "distinct subnets asked for, but the search space",
    ),
    (
        "many-task-no-root",
        [*S, "--set", "data=[{{dataset: digits}}, {{dataset: folder, name: photos}}]"],
        "task 'photos' (data.1): dataset 'folder' needs the folder it is in: data.root",
    ),
    ("objective-unknown-task", [*S, "--set", "objectives=[top1:nope,madds]"], "names no task of this run"),
    # ---- issue 39: commands that must not change a run folder they were not asked to
    ("export-no-models", ["export", "{run}", "--models", "0"], "--models 0 exports nothing"),
    ("export-out-inside-run", ["export", "{run}", "--out", "{run}/models"], "inside the run folder"),
    ("export-out-in-other-run", ["export", "{run}", "--out", "{pt}/exported"], "inside the run folder"),
    # ---- damaged run-folder files: the file, the entry and the field named
    ("report-models-field", ["report", "{run_models_field}"], "entry 0 (natnet_1_"),
    ("report-models-field-name", ["report", "{run_models_field}"], "madds: Field required"),
    ("report-models-type", ["report", "{run_models_type}"], "madds: Input should be a valid number"),
    ("report-models-dict", ["report", "{run_models_dict}"], "not a list of model entries"),
    ("report-state-history", ["report", "{run_state_history}"], "state.json is damaged: history"),
    ("export-models-type", ["export", "{run_models_type}"], "models.json is damaged"),
    ("export-state-history", ["export", "{run_state_history}"], "history"),
    # ---- damaged or incomplete model folders
    ("eval-no-weights", ["eval", "{model_no_weights}", "--data", "digits"], "model.safetensors is missing"),
    ("eval-no-json", ["eval", "{model_no_json}", "--data", "digits"], "but not model.json"),
    (
        "eval-json-type",
        ["eval", "{model_json_type}", "--data", "digits"],
        "preprocessing.resolution: Input should be a valid integer",
    ),
    ("eval-seed-type", ["eval", "{model_seed_type}", "--data", "digits"], "provenance.seed"),
    ("eval-release-size", ["eval", "{release_resolution}", "--data", "digits"], "img_size must be"),
    ("latency-chain", ["latency", "measure", "{chain_config}"], "blocks[2] takes"),
    # ---- latency tables validated when loaded
    ("table-entries", ["latency", "predict", "{table_entries_list}", "{model}"], "entries: Input should be"),
    ("table-calibration", ["latency", "predict", "{table_calibration_list}", "{model}"], "calibration"),
    ("table-scale", ["latency", "predict", "{table_scale_text}", "{model}"], "calibration.scale"),
    # ---- image folders checked when scanned
    ("data-truncated", ["data", "info", "folder", "--root", "{truncated_images}"], "cut has no readable"),
    # ---- nat quickstart
    ("quickstart-models", ["quickstart", "--out", "{tmp}/q", "--models", "-1"], "--models"),
    ("quickstart-set", ["quickstart", "--out", "{tmp}/q", "--set", "iterations=x"], "iterations"),
    ("quickstart-precision", ["quickstart", "--out", "{tmp}/q", "--precision", "int8"], "--precision"),
]


@pytest.mark.parametrize(("name", "argv", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(places, capsys, name, argv, expected) -> None:
    argv = [a.format(**places) for a in argv]
    folders = [
        Path(v) for k, v in places.items() if k.startswith(("run", "pt", "model")) and Path(v).is_dir()
    ]
    before = [digest(f) for f in folders]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    captured = capsys.readouterr()
    assert code not in (0, None), f"{name}: exit {code}"
    lines = captured.err.strip().splitlines()
    assert lines, f"{name}: nothing on stderr"
    assert "Traceback" not in captured.err, captured.err
    assert lines[-1].startswith(f"nat {argv[0]}: error: "), lines[-1]
    assert expected in lines[-1], f"{name}: {lines[-1]!r} lacks {expected!r}"
    assert "weights_only=False" not in captured.err
    assert [digest(f) for f in folders] == before, f"{name} changed a run folder"


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)
    assert {c[1][0] for c in CASES} >= {
        "search", "profile", "data", "pretrain", "export", "report", "eval", "latency"
    }  # fmt: skip
