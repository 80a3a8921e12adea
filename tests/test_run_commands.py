"""From search to deployed model: `nat search` delivers models and a report; `nat export`, `nat report`,
`nat eval` on a run folder; the one-call library API (`nat.search`, `nat.open_run`)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

import nat
from nat.cli import main
from nat.space import encode

SETS = {
    "initial_samples": 6,
    "iterations": 1,
    "candidates_per_iteration": 2,
    "adaptation.max_steps": 3,
    "nsga3.pop_size": 12,
    "nsga3.generations": 3,
    "evaluation.calibration_images": 32,
    "data.val_size": 100,
    "finalize.models": 2,
    "finalize.finetune_epochs": 0.05,
}


def digest(path: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def search_args(out: Path, **changes) -> list[str]:
    args = ["search", "--preset", "smoke", "--out", str(out)]
    for key, value in {**SETS, **changes}.items():
        args += ["--set", f"{key}={json.dumps(value) if isinstance(value, list) else value}"]
    return args


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("delivered") / "run"
    assert main(search_args(out)) == 0
    return out


def test_search_ends_with_models_and_a_report(run: Path) -> None:
    for name in ("models.json", "front.png", "summary.md", "report.html", "front.json"):
        assert (run / name).is_file(), name
    models = json.loads((run / "models.json").read_text())
    assert 1 <= len(models) <= 2
    for m in models:
        folder = run / "models" / m["name"]
        assert (folder / "model.safetensors").is_file() and (folder / "net.subnet").is_file()
        assert m["settings"]["distill"] is True and m["finetune_epochs"] == 0.05  # KD on when fine-tuning
        assert m["test_images"] > 0 and m["test_top1"] <= m["test_top5"]
    html = (run / "report.html").read_text()
    assert all(m["name"] in html for m in models) and "data:image/png;base64" in html
    summary = (run / "summary.md").read_text()
    assert all(m["name"] in summary for m in models)
    front = json.loads((run / "front.json").read_text())
    assert f"{len(models)} of the {len(front)} front members (finalize.models: 2)" in summary


def test_a_finished_run_resumed_redoes_nothing(run: Path) -> None:
    before = digest(run, skip=("search.log", "versions.json", "config.yaml", ".lock"))
    assert main(["search", "--resume", str(run)]) == 0
    assert digest(run, skip=("search.log", "versions.json", "config.yaml", ".lock")) == before


def test_resume_refuses_a_change_that_alters_results(run: Path, capsys) -> None:
    before = digest(run)
    assert main(["search", "--resume", str(run), "--set", "seed=5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another seed" in err[0] and err[0].startswith("nat search: error:")
    assert main(["search", "--resume", str(run), "--set", "adaptation.lr=0.5"]) == 1
    assert "another adaptation.lr" in capsys.readouterr().err
    assert digest(run) == before


def test_report_rewrites_the_same_files_and_nothing_else(run: Path, capsys) -> None:
    before = digest(run, skip=(".lock",))
    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0
    assert str(run / "report.html") in capsys.readouterr().out
    assert digest(run, skip=(".lock",)) == before


def test_eval_reproduces_the_runs_test_figure(run: Path, capsys) -> None:
    models = json.loads((run / "models.json").read_text())
    for m in models:
        assert main(["eval", str(run / "models" / m["name"]), "--data", "digits", "--json"]) == 0
        scores = json.loads(capsys.readouterr().out)
        assert scores == {"top1": m["test_top1"], "top5": m["test_top5"], "images": m["test_images"]}
    assert main(["eval", str(run / "models" / models[0]["name"]), "--data", "digits", "--split", "val"]) == 0
    assert re.search(
        r"top-1 [\d.]+%  top-5 [\d.]+%  \(\d+ images, val split of digits", capsys.readouterr().out
    )
    # bf16 autocast: the same images, a top-1 within a few images of fp32's
    folder = str(run / "models" / models[0]["name"])
    assert main(["eval", folder, "--data", "digits", "--json", "--precision", "bf16"]) == 0
    bf16 = json.loads(capsys.readouterr().out)
    assert bf16["images"] == models[0]["test_images"]
    assert abs(bf16["top1"] - models[0]["test_top1"]) <= 5 / bf16["images"]


def test_export_elsewhere_leaves_the_run_unchanged(run: Path, tmp_path, capsys) -> None:
    before = digest(run)
    out = tmp_path / "exported"
    assert main(["export", str(run), "--models", "1", "--finetune-epochs", "0", "--out", str(out)]) == 0
    assert digest(run) == before
    (entry,) = json.loads((out / "models.json").read_text())
    assert (out / entry["name"] / "model.safetensors").is_file() and entry["settings"]["distill"] is False
    assert "1 model(s)" in capsys.readouterr().out
    # exported again with the same settings: reused, not rebuilt
    stamp = (out / entry["name"] / "model.safetensors").stat().st_mtime_ns
    assert main(["export", str(run), "--models", "1", "--finetune-epochs", "0", "--out", str(out)]) == 0
    assert (out / entry["name"] / "model.safetensors").stat().st_mtime_ns == stamp


def test_export_delivers_the_runs_models_as_they_are(run: Path, tmp_path, capsys) -> None:
    """Without settings that make new models, `nat export` converts the delivered ones: the same names,
    weights and figures, copied to --out and/or given runtime files, each measured in its own runtime;
    the run's own files stay as they were."""
    onnx = pytest.importorskip("onnx")
    before = digest(run, skip=(".lock",))
    delivered = json.loads((run / "models.json").read_text())
    out = tmp_path / "as_delivered"
    argv = ["export", str(run), "--out", str(out), "--onnx", "--int8", "--calibration-images", "16"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "as the run delivered them" in printed and "model.int8.onnx" in printed
    assert digest(run, skip=(".lock",)) == before
    exported = json.loads((out / "models.json").read_text())
    assert [{k: v for k, v in m.items() if k != "formats"} for m in exported] == delivered
    for m in exported:
        new_files = ("model.onnx", "model.int8.onnx")
        assert digest(out / m["name"], skip=new_files) == digest(run / "models" / m["name"])
        formats = m["formats"]
        assert list(formats) == ["pytorch", "onnx", "onnx_int8"]
        for f in formats.values():
            assert f["size_bytes"] == (out / m["name"] / f["file"]).stat().st_size
            assert f["test_images"] == m["test_images"] and f["latency_ms"] > 0 and f["threads"] == 1
        assert formats["pytorch"]["test_top1"] == m["test_top1"]  # the run's figure, measured again
        assert abs(formats["onnx"]["test_top1"] - m["test_top1"]) <= 1 / m["test_images"] + 1e-9
        assert formats["onnx_int8"]["calibration_images"] == 16
        # a smoke model is mostly graph, which int8 does not shrink: smaller, with int8 weights
        assert formats["onnx_int8"]["size_bytes"] < 0.8 * formats["onnx"]["size_bytes"]
        int8 = onnx.load(str(out / m["name"] / "model.int8.onnx")).graph.initializer
        assert sum(t.data_type == onnx.TensorProto.INT8 for t in int8) >= 10
    # nat eval runs a deployed file in its runtime and finds the figure models.json holds
    first = exported[0]
    for target in (
        [str(out / first["name"] / "model.int8.onnx")],
        [str(out / first["name"]), "--format", "onnx"],
    ):
        assert main(["eval", *target, "--data", "digits", "--json"]) == 0
        scores = json.loads(capsys.readouterr().out)
        facts = first["formats"][scores["format"]]
        assert (scores["top1"], scores["top5"], scores["images"]) == (
            facts["test_top1"],
            facts["test_top5"],
            facts["test_images"],
        )
        assert scores["latency_ms"] > 0 and scores["threads"] == 1
    assert main(["eval", str(out / first["name"]), "--format", "executorch", "--data", "digits"]) == 1
    assert "has no model.pte" in capsys.readouterr().err
    # the same request again: nothing is written or measured anew
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "models.json"}
    assert main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((out / "models.json").read_text()) == exported
    # into (a copy of) the run itself: the files are added, its index and report rewritten, nothing else
    copy = tmp_path / "run_copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".lock"))
    before = digest(copy)
    assert main(["export", str(copy), "--onnx"]) == 0
    after = digest(copy, skip=(".lock",))
    assert {k for k in after if k not in before} == {f"models/{m['name']}/model.onnx" for m in delivered}
    changed = {k for k in before if after[k] != before[k]}
    assert "models.json" in changed and changed <= {"models.json", "report.html", "summary.md", "front.png"}
    assert all(
        set(m["formats"]) == {"pytorch", "onnx"} for m in json.loads((copy / "models.json").read_text())
    )


def test_command_errors_are_one_line(run: Path, tmp_path, capsys) -> None:
    before = digest(run, skip=(".lock",))
    model = json.loads((run / "models.json").read_text())[0]["name"]
    broken = tmp_path / "broken_model"
    shutil.copytree(run / "models" / model, broken)
    (broken / "model.onnx").write_bytes(b"<html>not a model</html>")
    cases = [
        (["eval", str(broken / "model.onnx"), "--data", "digits"], "is not a model ONNX Runtime can load"),
        (["export", str(tmp_path / "nowhere")], "not a nat run directory"),
        (["report", str(tmp_path)], "not a nat run directory"),
        (["eval", str(tmp_path / "none"), "--data", "digits"], "model folder not found"),
        (["eval", str(run), "--data", "digits"], "not a model folder"),
        (["export", str(run), "--out", str(run)], "--out is the run folder"),
        (["export", str(run), "--int8"], "int8 quantizes the ONNX and/or ExecuTorch files"),
        (["export", str(run), "--onnx", "--int8", "--calibration-images", "0"], "--calibration-images"),
        (
            [
                "export",
                str(run),
                "--onnx",
                "--int8",
                "--calibration-images",
                "99999",
                "--out",
                str(tmp_path / "x"),
            ],
            "calibration_images is 99999 but the training split holds",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and err[0].startswith(f"nat {argv[0]}: error:"), err
    assert not (tmp_path / "x").exists()  # refused before anything was copied or written
    assert digest(run, skip=(".lock",)) == before  # the run folder, byte for byte


def test_objectives_without_madds_deliver_models_and_a_report(tmp_path) -> None:
    out = tmp_path / "params"
    assert main(search_args(out, objectives=["top1", "params"], **{"finalize.finetune_epochs": 0})) == 0
    models = json.loads((out / "models.json").read_text())
    assert models and all("params" in m and "test_top1" in m for m in models)
    assert (out / "front.png").stat().st_size > 1000 and "params" in (out / "report.html").read_text()


def test_library_api(tmp_path) -> None:
    overrides = {k: v for k, v in SETS.items() if "." not in k}
    overrides |= {"adaptation": {"max_steps": 3}, "nsga3": {"pop_size": 12, "generations": 3}}
    overrides |= {
        "data": {"val_size": 100},
        "finalize": {"models": 1},
        "evaluation": {"calibration_images": 32},
    }
    result = nat.search("smoke", out=tmp_path / "lib", overrides=overrides)
    assert result.front and len(result.models) == 1 and result.run_dir == tmp_path / "lib"
    before = digest(tmp_path / "lib")
    run = nat.open_run(tmp_path / "lib")
    assert run.finished and run.config.iterations == 1 and [h["iteration"] for h in run.history] == [0, 1]
    assert {r.subnet for r in run.front} == {r.subnet for r in result.front}
    assert run.models == result.models and len(run.archive) >= len(run.current)
    # the space its genomes encode, as the adapted supernet records it (what a surrogate is fitted in)
    assert all(tuple(encode(r.subnet, run.space)) == r.genome for r in run.current)
    assert digest(tmp_path / "lib") == before  # opening changed nothing
    model = nat.load_model(run.models_dir / run.models[0]["name"])
    assert not model.training
    # the same call again continues (here: finds everything done) instead of failing
    again = nat.search("smoke", out=tmp_path / "lib", overrides=overrides)
    assert again.models == result.models
    with pytest.raises(nat.ConfigError, match="another seed"):
        nat.search("smoke", out=tmp_path / "lib", overrides={**overrides, "seed": 3})


def test_eval_reads_a_nat_release_folder(tmp_path, capsys) -> None:
    """A release folder (net.config + net.weights as users download them) evaluates like nat's own."""
    import torch

    from nat.export import build_natnet

    release = Path(__file__).resolve().parents[1] / "../shared/reference/nat_official/subnets/cifar10"
    configs = sorted(release.glob("*/net.config"))
    if not configs:
        pytest.skip("NAT's released configs (shared/reference) absent")
    config = json.loads(configs[0].read_text())
    config["img_size"] = 32  # fully convolutional: a small input keeps the test fast
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "net.config").write_text(json.dumps(config))
    torch.manual_seed(0)
    state = build_natnet(config).state_dict()
    legacy = {"module." + k.replace(".conv.", ".mobile_inverted_conv.", 1): v for k, v in state.items()}
    torch.save({"state_dict": legacy}, folder / "net.weights")
    assert main(["eval", str(folder), "--data", "digits", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    from nat.data import load_dataset

    assert scores["images"] == len(load_dataset("digits").test) and 0 <= scores["top1"] <= scores["top5"] <= 1
    (folder / "net.weights").unlink()
    assert main(["eval", str(folder), "--data", "digits"]) == 1
    assert "no net.weights" in capsys.readouterr().err


def test_quickstart_help_quotes_the_presets_own_values(capsys) -> None:
    """The help's "(preset: N)" comes from the preset file, so it cannot go stale when the preset changes."""
    import yaml

    from nat.cli.quickstart import preset_finalize

    with pytest.raises(SystemExit):
        main(["quickstart", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    finalize = yaml.safe_load((Path(nat.__file__).parent / "search/presets/quickstart.yaml").read_text())[
        "finalize"
    ]
    assert preset_finalize() == finalize
    assert f"fine-tuning epochs per model (preset: {finalize['finetune_epochs']:g})" in text
    assert f"front models to extract (preset: {finalize['models']})" in text


def test_open_run_validates_what_it_reads_back(run: Path, tmp_path) -> None:
    """`nat.open_run` on a copied run whose models.json and state.json were edited by hand: one
    `CheckpointError` naming the file, the entry and the field, not a KeyError in user code."""
    import shutil

    import nat
    from nat.errors import CheckpointError

    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".lock"))
    entries = json.loads((copy / "models.json").read_text())
    entries[0]["test_top1"] = "97%"
    (copy / "models.json").write_text(json.dumps(entries))
    view = nat.open_run(copy)
    with pytest.raises(CheckpointError, match=r"models.json is damaged: entry 0 \(natnet_1_.*test_top1"):
        _ = view.models
    state = json.loads((copy / "state.json").read_text())
    state["history"][0]["iteration"] = "zero"
    (copy / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match=r"state.json is damaged: history.0.iteration"):
        _ = view.history
    assert view.front  # the archive itself is intact and still read
    for weights in copy.glob("supernet_*.safetensors"):
        weights.unlink()
    with pytest.raises(nat.ConfigError, match="holds no adapted supernet yet"):
        _ = view.space


def test_finalize_models_0_on_a_resumed_run_keeps_its_models(run: Path, tmp_path) -> None:
    """Asking for no models is no request to delete the delivered ones."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".lock"))
    models = digest(copy / "models")
    index = (copy / "models.json").read_bytes()
    assert main(["search", "--resume", str(copy), "--set", "finalize.models=0"]) == 0
    assert digest(copy / "models") == models and (copy / "models.json").read_bytes() == index


@pytest.mark.slow
def test_search_delivers_every_runtime_file_measured(tmp_path) -> None:
    """`finalize: {onnx, executorch, int8}` in a search: each model in PyTorch, ONNX Runtime and
    ExecuTorch, fp32 and int8, each measured in its runtime (ExecuTorch's lowering takes tens of
    seconds per file, hence a slow test)."""
    pytest.importorskip("executorch")
    out = tmp_path / "deployed"
    changes = {
        "finalize.models": 1,
        "finalize.onnx": "true",
        "finalize.executorch": "true",
        "finalize.int8": "true",
        "finalize.calibration_images": 32,
    }
    assert main(search_args(out, **changes)) == 0
    (model,) = json.loads((out / "models.json").read_text())
    formats = model["formats"]
    assert list(formats) == ["pytorch", "onnx", "onnx_int8", "executorch", "executorch_int8"]
    for f in formats.values():
        assert (out / "models" / model["name"] / f["file"]).stat().st_size == f["size_bytes"]
        assert f["test_images"] == model["test_images"]
    one_image = 1 / model["test_images"] + 1e-9
    assert formats["pytorch"]["test_top1"] == model["test_top1"]
    assert abs(formats["executorch"]["test_top1"] - model["test_top1"]) <= one_image
    # ExecuTorch's int8 file is a quarter of its fp32 one plus little; an ONNX file of a smoke model
    # is mostly graph (quantize/dequantize nodes, names), which int8 does not shrink
    assert formats["executorch_int8"]["size_bytes"] < 0.5 * formats["executorch"]["size_bytes"]
    assert formats["onnx_int8"]["size_bytes"] < 0.8 * formats["onnx"]["size_bytes"]
    assert "ExecuTorch int8" in (out / "report.html").read_text()


def test_a_kill_while_runtime_files_are_made_loses_no_model(tmp_path, monkeypatch) -> None:
    """A model is in models.json before its runtime files are made: a kill during that step (a slow
    ExecuTorch lowering, say) keeps the fine-tuned model, and the resumed run only adds the files."""
    import nat.search.finalize as finalize_module

    real = finalize_module.deliver_formats

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(finalize_module, "deliver_formats", killed)
    out = tmp_path / "run"
    argv = search_args(out, **{"finalize.models": 1, "finalize.onnx": "true"})
    assert main(argv) != 0
    (entry,) = json.loads((out / "models.json").read_text())
    weights = out / "models" / entry["name"] / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert "formats" not in entry and not weights.with_name("model.onnx").exists()
    monkeypatch.setattr(finalize_module, "deliver_formats", real)
    assert main(["search", "--resume", str(out)]) == 0
    (resumed,) = json.loads((out / "models.json").read_text())
    assert weights.stat().st_mtime_ns == stamp  # the model itself was kept, not fine-tuned again
    assert set(resumed["formats"]) == {"pytorch", "onnx"} and weights.with_name("model.onnx").is_file()
