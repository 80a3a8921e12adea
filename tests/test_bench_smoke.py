"""The benchmarks that drive the search loop's internals still run (`make test-slow`).

`bench/distributed_scaling.py` once crashed for weeks unnoticed after `NATSearch.adapt` began taking
genomes per task: a benchmark is only run by hand, so an API change inside the loop does not show until
someone needs its figures. These checks run each such benchmark at its smallest size, into a temporary
file (never over the committed results), and check that it wrote what its issue names. They measure
nothing: the figures of a seconds-long run mean nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def run_bench(name: str, *args: str) -> None:
    run_python(str(ROOT / "bench" / f"{name}.py"), *args)


def run_python(*args: str) -> None:
    """This Python on ``args`` (a script or ``-m module``) with the checkout's sources, one thread."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_distributed_scaling_runs_on_one_and_two_processes(tmp_path: Path) -> None:
    out = tmp_path / "distributed_scaling.json"
    run_bench(
        "distributed_scaling", "--regime", "shipped", "--steps", "2", "--subnets", "2", "--rounds", "1",
        "--result", str(out),
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert result["adaptation_speedup"] > 0 and result["evaluation_speedup"] > 0
    assert result["shipped"]["evaluations_identical_across_world_sizes"] is True


def test_distributed_ceiling_splits_the_step(tmp_path: Path) -> None:
    out = tmp_path / "distributed_ceiling.json"
    run_bench("distributed_ceiling", "--steps", "1", "--rounds", "1", "--batch", "8", "--result", str(out))
    result = json.loads(out.read_text())
    assert set(result["speedup"]) == {"half_batch_alone", "no_sync", "no_sync_plus_allreduce", "ddp"}
    assert result["two_process_ms"]["allreduce"] > 0


def test_depthwise_weight_grad_compares_both_gradients(tmp_path: Path) -> None:
    out = tmp_path / "depthwise_weight_grad.json"
    run_bench("depthwise_weight_grad", "--batch", "2", "--repeats", "1", "--out", str(out))
    result = json.loads(out.read_text())
    assert len(result["rows"]) == 48  # 16 (channels, size, stride) shapes x kernels 3, 5 and 7
    assert all(row["max_relative_difference"] < 1e-4 for row in result["rows"])  # the same gradient
    # oneDNN for 3x3; nat's C kernel (or the product fallback where it cannot compile) for 5x5 and 7x7
    assert {row["library_picks"] for row in result["rows"] if row["kernel"] == 3} == {"onednn"}
    assert {row["library_picks"] for row in result["rows"] if row["kernel"] > 3} <= {"native", "product"}


def test_compile_speed_reports_compile_times_and_break_even(tmp_path: Path) -> None:
    out = tmp_path / "compile_speed.json"
    run_bench("compile_speed", "--rounds", "1", "--backend", "aot_eager", "--out", str(out))
    figures = json.loads(out.read_text())["settings"]["fashion_mnist_28px_b64"]
    assert figures["compile_train_seconds"] > 0 and figures["compile_eval_seconds"] > 0
    assert set(figures["train_step_seconds"]) == {"supernet", "standalone", "compiled"}


def test_paper_scale_runs_the_whole_loop_on_ofa_architectures(tmp_path: Path) -> None:
    out = tmp_path / "paper_scale.json"
    run_bench("paper_scale", "--precisions", "fp32", "--out", str(out))
    result = json.loads(out.read_text())
    assert result["fp32"]["archive_size"] > 0
    # the GPU sizes of bench/gpu_check.sh, and the strategy costs taken from the run just made
    again = tmp_path / "paper_scale_sized.json"
    run_bench(
        "paper_scale", "--precisions", "bf16", "--train-batch", "12", "--eval-batch", "20", "--workers", "2",
        "--max-steps", "2", "--calibration-images", "24", "--val-images", "24", "--per-class", "26",
        "--strategy-from", str(out), "--out", str(again),
    )  # fmt: skip
    sized = json.loads(again.read_text())
    assert sized["sizes"]["train_batch"] == 12 and sized["sizes"]["train_jpegs"] == 260
    strategy = result["fp32"]["paper_sized_surrogate_and_nsga3"]
    assert sized["bf16"]["paper_sized_surrogate_and_nsga3"] == strategy


def test_supernet_throughput_compares_layouts_and_ofa(tmp_path: Path) -> None:
    out = tmp_path / "supernet_throughput.json"
    run_bench(
        "supernet_throughput", "--device", "cpu", "--resolution", "64", "--batch", "2", "--infer-batch", "2",
        "--subnets", "2", "--rounds", "1", "--precisions", "fp32", "bf16", "--sequence", "2",
        "--out", str(out),
    )  # fmt: skip
    result = json.loads(out.read_text())
    variants = {f"{impl}_{p}" for impl in ("nat_nhwc", "nat_nchw", "ofa") for p in ("fp32", "bf16")}
    assert set(result["train_images_per_s"]) == variants == set(result["inference_images_per_s"])
    assert set(result["nat_over_ofa_train"]) == {
        f"{n}_{p}" for n in ("nat_nhwc", "nat_nchw") for p in ("fp32", "bf16")
    }
    assert len(result["new_shapes"]["nat_nchw"]["step_seconds"]) == 2
    assert set(result["new_shapes"]) == {"nat_nchw", "nat_nhwc", "ofa"}  # OFA's network as the reference
    only = tmp_path / "supernet_new_shapes.json"
    run_bench(
        "supernet_throughput", "--device", "cpu", "--batch", "2", "--precisions", "bf16", "--sequence", "1",
        "--sequence-only", "--memory-formats", "contiguous", "--out", str(only),
    )  # fmt: skip
    sequence = json.loads(only.read_text())
    assert "train_images_per_s" not in sequence and set(sequence["new_shapes"]) == {"nat_nchw", "ofa"}


def test_many_task_quick_compares_many_and_single_task_runs(tmp_path: Path) -> None:
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Fashion-MNIST is not installed (Debian: dataset-fashion-mnist)")
    out = tmp_path / "many_task.json"
    run_bench("many_task", "--quick", "--out", str(out))
    assert json.loads(out.read_text())


def test_supernet_paired_finds_no_difference_between_a_supernet_and_itself(tmp_path: Path) -> None:
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("needs Fashion-MNIST (apt-get install dataset-fashion-mnist)")
    out = tmp_path / "supernet_paired.json"
    run_bench(
        "supernet_paired", "--b", "builtin:fashion_mnist_tiny", "--resolutions", "24", "--out", str(out)
    )
    rows = json.loads(out.read_text())["rows"]
    assert [(r["split"], r["resolution"]) for r in rows] == [("val", 24), ("test", 24)]
    assert all(r["only_a_right"] == r["only_b_right"] == 0 and r["mcnemar_exact_p"] == 1.0 for r in rows)


def test_finetune_lr_measures_search_val_and_test_per_learning_rate(tmp_path: Path) -> None:
    run = tmp_path / "run"
    tiny = [
        "iterations=1", "initial_samples=4", "candidates_per_iteration=2",
        "adaptation.initial_epochs=0.05", "adaptation.epochs=0.05", "nsga3.generations=2",
        "nsga3.pop_size=8", "evaluation.calibration_images=32",
    ]  # fmt: skip
    sets = [arg for item in tiny for arg in ("--set", item)]
    run_python("-m", "nat", "quickstart", "--out", str(run), *sets, "--models", "2", "--finetune-epochs", "0")
    out = tmp_path / "finetune_lr.json"
    run_bench("finetune_lr", "--run", str(run), "--lrs", "0.05", "--epochs", "0.05", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [r["lr"] for r in rows] == [None, 0.05]
    archive = {m["name"]: m["top1"] for m in json.loads((run / "models.json").read_text())}
    # not fine-tuned, a model measures on search-val what the search measured for its subnet
    assert {m["name"]: m["val_top1"] for m in rows[0]["models"]} == pytest.approx(archive, abs=0.01)
    assert all(0 <= m["test_top1"] <= 1 for row in rows for m in row["models"])


def test_transfer_fine_tunes_baselines_at_the_learning_rate_of_nat_models(tmp_path: Path) -> None:
    out = tmp_path / "transfer_seed0.json"
    run_bench(
        "transfer", "--tasks", "digits", "--iterations", "1", "--finetune-epochs", "0.2", "--models", "2",
        "--threads", "1", "--out", str(out), "--plot",
    )  # fmt: skip
    run = json.loads(out.read_text())
    assert run["threads"] == 1 and run["seed"] == 0 and run["commit"] and run["machine"]["cpus"]
    result = run["tasks"]["digits"]
    assert {b["name"] for b in result["baseline"]} == {"largest", "similar_madds"}
    assert all(b["lr"] == result["budget"]["finetune_lr"] for b in result["baseline"])
    assert 1 <= len(result["nat"]) <= 2 and (tmp_path / "transfer_seed0.png").is_file()
    summary = tmp_path / "summary.json"
    run_bench("transfer_summary", str(out), "--out", str(summary))
    written = json.loads(summary.read_text())
    assert written["seeds"] == [0] and written["runs"]["0"]["commit"] == run["commit"]
    assert set(written["tasks"]["digits"]["baselines"]) == {"largest", "similar_madds"}


def test_retarget_quick_compares_retarget_and_fresh_search(tmp_path: Path) -> None:
    out = tmp_path / "retarget.json"
    run_bench("retarget", "--quick", "--seeds", "0", "--out", str(out))
    result = json.loads(out.read_text())
    for target in ("params", "latency"):
        for key in ("time_ratio", "hypervolume_ratio"):
            assert set(result[target][key]) == {"per_seed", "mean"}


def test_warm_start_quick_runs_every_arm_against_a_cold_start(tmp_path: Path) -> None:
    out = tmp_path / "warm_start.json"
    run_bench("warm_start", "--quick", "--seeds", "0", "--out", str(out))
    arms = json.loads(out.read_text())["targets"]["digits"]
    assert set(arms) == {"default", "archive", "surrogate", "supernet", "archive+surrogate", "all"}
    assert {"evaluations_ratio", "final_hypervolume_ratio"} <= set(arms["default"])
    # a second process's arms of the same target and seed (the same cold run) join the first's
    full = json.loads(out.read_text())
    default_only = json.loads(out.read_text())
    digits = default_only["per_seed"]["0"]["digits"]["arms"]
    default_only["per_seed"]["0"]["digits"]["arms"] = {k: digits[k] for k in ("cold", "default")}
    archive_only = json.loads(out.read_text())
    archive_only["per_seed"]["0"]["digits"]["arms"] = {k: digits[k] for k in ("cold", "archive")}
    parts = [tmp_path / "default.json", tmp_path / "archive.json"]
    for path, data in zip(parts, (default_only, archive_only), strict=True):
        path.write_text(json.dumps(data))
    merged = tmp_path / "merged.json"
    run_bench("warm_start", "--combine", *map(str, parts), "--out", str(merged))
    combined = json.loads(merged.read_text())["targets"]["digits"]
    assert set(combined) == {"default", "archive"}
    assert combined["archive"] == full["targets"]["digits"]["archive"]


def test_folder_defaults_quick_runs_a_folder_and_its_native_twin(tmp_path: Path) -> None:
    out = tmp_path / "folder_defaults.json"
    run_bench("folder_defaults", "--quick", "--out", str(out))
    tasks = json.loads(out.read_text())["tasks"]
    assert set(tasks) == {"digits", "shapes"} and set(tasks["digits"]) >= {"folder", "native"}
    assert "best_test_top1_difference" in tasks["digits"]
    assert tasks["digits"]["folder"]["chosen"][1].startswith("supernet: builtin:fashion_mnist_tiny")


def test_evaluation_speed_quick_times_phases_against_pure_forward(tmp_path: Path) -> None:
    out = tmp_path / "evaluation_speed.json"
    run_bench("evaluation_speed", "--quick", "--out", str(out))
    settings = json.loads(out.read_text())["settings"]
    assert set(settings) == {"quickstart", "ofa_jpeg", "ofa_jpeg_paper"}
    for row in settings.values():
        assert row["efficiency"] > 0
        assert set(row["seconds_per_subnet"]) == {"calibration", "validation", "other"}
    # the GPU script's form (--precision bf16), here on the CPU
    run_bench(
        "evaluation_speed", "--quick", "--settings", "quickstart", "--precision", "bf16", "--out", str(out)
    )
    result = json.loads(out.read_text())
    assert result["precision"] == "bf16" and result["device"] == "cpu"
    assert result["settings"]["quickstart"]["efficiency"] > 0


def test_evaluation_speed_quick_measures_calibration_fidelity(tmp_path: Path) -> None:
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("needs Fashion-MNIST (apt-get install dataset-fashion-mnist)")
    out = tmp_path / "evaluation_speed.json"
    run_bench("evaluation_speed", "--quick", "--settings", "quickstart", "--fidelity", "--out", str(out))
    fidelity = json.loads(out.read_text())["calibration_fidelity"]
    assert fidelity["subnets"] == 4 and fidelity["reference_images"] == 128
    assert set(fidelity["sizes"]) == {"32", "64"}
    for row in fidelity["sizes"].values():
        assert -1 <= row["kendall_tau"] <= 1 and row["seconds_per_evaluation"] > 0


def test_deploy_quick_measures_int8_against_fp32_per_runtime(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "deploy.json"
    run_bench("deploy", "--quick", "--out", str(out))
    result = json.loads(out.read_text())
    onnx = result["per_runtime"]["onnx"]
    assert {"int8_top1_drop_points", "int8_latency_ratio", "int8_size_ratio"} <= set(onnx)
    assert set(result["met"]) == {"int8_top1_drop_points", "int8_latency_ratio", "int8_size_ratio"}
    assert all(set(m["formats"]) == {"pytorch", "onnx", "onnx_int8"} for m in result["models"])
    spread = result["int8_spread"]
    assert spread["subnets"] == 2 and len(spread["rows"]) == 2 and "drop_std_points" in spread
    assert result["threads"] == 1 and result["commit"] and result["machine"]["cpus"]


def test_reevaluation_quick_compares_policies_on_whole_runs(tmp_path: Path) -> None:
    out = tmp_path / "reevaluation.json"
    run_bench(
        "reevaluation", "--quick", "--jobs", "1", "--out", str(out), "--iterations", "1", "--candidates", "2"
    )
    result = json.loads(out.read_text())
    assert set(result["summary"]) == {"all", "predicted"} and len(result["runs"]) == 2
    assert result["counts"] == {"iterations": 1, "candidates_per_iteration": 2}  # the smoke preset's: 2, 3
    assert all(8 < r["archive_members"] <= 8 + 2 for r in result["runs"])  # 8 initial, one iteration of 2
    every = next(r for r in result["runs"] if r["policy"] == "all")
    assert every["archive_tau"] == 1.0 and every["predicted"] == 0  # all values measured on the final weights
    assert all(0 < r["test_hypervolume"] < 1.21 and r["evaluations"] > 0 for r in result["runs"])


def measured(name: str, tmp_path: Path, *args: str) -> dict:
    """Run ``bench/NAME.py ARGS --out FILE`` and return FILE's result, which records its machine, threads
    and commit (bench/record.py) as every result file does."""
    out = tmp_path / f"{name}.json"
    run_bench(name, *args, "--out", str(out))
    result = json.loads(out.read_text())
    assert result["machine"] and isinstance(result["threads"], int) and result["commit"]
    return result


def test_complexity_speed_times_ten_thousand_genomes(tmp_path: Path) -> None:
    result = measured("complexity_speed", tmp_path)
    assert result["subnets"] == 10_000 and 0 < result["seconds_10k"] < 10


def test_static_layout_compares_channels_last_and_nchw(tmp_path: Path) -> None:
    result = measured("static_layout", tmp_path, "--subnets", "1", "--repeats", "1")
    assert result["regimes"] and all(r["speedup"] > 0 for r in result["regimes"].values())


def test_data_speed_compares_the_in_memory_loader_with_torchvision(tmp_path: Path) -> None:
    result = measured(
        "data_speed", tmp_path, "--resolutions", "32", "--rounds", "1", "--workers", "0", "--batch-size", "32"
    )
    assert set(result["results_images_per_second"]["32"]) >= {"in_memory", "torchvision_w0"}


def test_precision_speed_times_bf16_against_fp32(tmp_path: Path) -> None:
    result = measured("precision_speed", tmp_path, "--repeats", "1", "--precisions", "fp32", "bf16")
    assert result["settings"] and all("bf16_over_fp32_train" in s for s in result["settings"].values())


def test_supernet_speed_compares_nat_with_ofa(tmp_path: Path) -> None:
    pytest.importorskip("ofa")
    result = measured("supernet_speed", tmp_path, "--subnets", "1", "--rounds", "1")
    assert result["train_speedup"] > 0 and result["subnets"] == 1


def test_surrogates_ranks_every_model_on_the_stored_pairs(tmp_path: Path) -> None:
    result = measured("surrogates", tmp_path, "--sizes", "30", "--splits", "1")
    assert "adaptive" in result["sizes"]["30"] and result["splits"] == 1


def test_supernet_quality_measures_the_shipped_supernet(tmp_path: Path) -> None:
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("needs Fashion-MNIST (apt-get install dataset-fashion-mnist)")
    result = measured("supernet_quality", tmp_path, "--subnets", "2", "--resolutions", "24")
    assert len(result["random"]) == 2 and 0 < result["random_top1_range"][0] <= 1


def test_search_efficiency_compares_nat_with_random_search(tmp_path: Path) -> None:
    result = measured(
        "search_efficiency", tmp_path, "--dataset", "digits", "--val-images", "100", "--random-evals", "6",
        "--nat-evals", "6", "--initial", "4", "--candidates", "2", "--calibration-images", "32",
        "--pop-size", "8", "--generations", "2", "--threads", "1",
    )  # fmt: skip
    assert len(result["random"]["hypervolume"]) == 6 and len(result["nat"]["hypervolume"]) == 6


def test_latency_lut_scores_a_table_against_end_to_end_measurements(tmp_path: Path) -> None:
    committed = {p: p.read_bytes() for p in (ROOT / "bench" / "results" / "latency_tables").glob("*.yaml")}
    result = measured("latency_lut", tmp_path, "--only", "torch", "--subnets", "4")
    assert result["cases"] and all(-1 <= c["kendall_tau"] <= 1 for c in result["cases"])
    assert sorted(p.name for p in (tmp_path / "latency_tables").iterdir()) == [
        "torch_ofa_mbv3.yaml",
        "torch_tiny.yaml",
    ]
    assert all(p.read_bytes() == data for p, data in committed.items())  # the committed tables untouched


def test_make_surrogate_data_measures_a_given_supernet(tmp_path: Path) -> None:
    """The measure-only path that made bench/data/fmnist_s2_subnets.csv (the surrogate benchmark's data)."""
    out = tmp_path / "subnets.csv"
    run_bench(
        "make_surrogate_data",
        "--supernet", str(ROOT / "bench" / "data" / "supernet_fmnist_tiny_s2.safetensors"),
        "--val-size", "10000", "--subnets", "3", "--calib-images", "32", "--eval-images", "64",
        "--out", str(out),
    )  # fmt: skip
    lines = out.read_text().splitlines()
    assert lines[0].startswith("id,g0,") and lines[0].endswith("subnet,top1,madds,params")
    assert len(lines) == 4
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["eval_images"] == 64 and 0.0 <= meta["top1"]["min"] <= meta["top1"]["max"] <= 100.0  # percent
