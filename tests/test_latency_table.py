"""Latency lookup tables: keys (OFA's layout, checked against OFA's own code), building (resumable,
extensible), reading OFA's format, vectorised prediction, coverage errors, the search objective, the CLI.

Timing-dependent figures (Kendall tau, errors) are benchmarks (bench/latency_lut.py), not tests; most
tests here use a deterministic stand-in backend whose "latency" is a function of the layer's work, so
that they check nat's bookkeeping exactly. One test builds with the real PyTorch backend, one times a
layer with ONNX Runtime.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nat.cli import main
from nat.errors import ConfigError
from nat.objectives.latency_build import (
    CHUNK,
    Backend,
    Timing,
    TimingSettings,
    build_table,
    fit_calibration,
    make_backend,
    measure_network_ms,
)
from nat.objectives.latency_table import (
    LatencyPredictor,
    LatencyTable,
    network_layers,
    space_layers,
    subnet_layers,
)
from nat.search import NATSearch, load_config
from nat.search.objective_set import ObjectiveSet
from nat.space import PRESETS, SearchSpace, Subnet, get_space
from nat.space.genome import encode, sample_genomes
from nat.supernet.static import StaticMobileNetV3


class WorkBackend(Backend):
    """A deterministic stand-in: a layer "takes" 1 us per 1,000 multiply-adds plus 5 us, a whole
    network 0.9 x its layers + 0.05 ms, so every figure a test checks is exact. ``fail_after``: the
    preparation after that many is interrupted, as a user's Ctrl-C would."""

    name = "torch"

    def __init__(self, batch_size: int = 1, fail_after: int | None = None) -> None:
        super().__init__("cpu", 1, batch_size, TimingSettings(rounds=2, drift_correction=False))
        self.prepared = 0
        self.fail_after = fail_after

    def prepare(self, module, example):
        self.prepared += 1
        if self.fail_after is not None and self.prepared > self.fail_after:
            raise KeyboardInterrupt
        if isinstance(module, StaticMobileNetV3):
            layers = network_layers(module, example.shape[-1])
            ms = 0.9 * sum(work_ms(s.build(), s.example(1)) for s in layers) + 0.05
        else:
            ms = work_ms(module, example)
        return lambda: ms

    def time_call(self, call) -> Timing:
        return Timing.of([call()] * 3, 1)


def work_ms(module, example) -> float:
    macs = 0

    def hook(m, inputs, out):
        nonlocal macs
        if isinstance(m, torch.nn.Conv2d):
            macs += out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, torch.nn.Linear):
            macs += m.in_features * m.out_features

    handles = [m.register_forward_hook(hook) for m in module.modules()]
    with torch.no_grad():
        module.eval()(example)
    for h in handles:
        h.remove()
    return 0.005 + macs / 1e6


@pytest.fixture(scope="module")
def micro_table_file(tmp_path_factory) -> Path:
    """A stand-in table for the whole micro space (10 classes), built once for the module."""
    path = tmp_path_factory.mktemp("tables") / "micro.yaml"
    build_table(
        path, get_space("micro"), WorkBackend(), num_classes=[10], calibration_subnets=4, progress=False
    )
    return path


@pytest.fixture
def micro_table(micro_table_file: Path, tmp_path: Path) -> tuple[Path, LatencyTable]:
    """A test's own copy of the module's micro table: (its path, the table)."""
    path = tmp_path / "micro.yaml"
    path.write_bytes(micro_table_file.read_bytes())
    return path, LatencyTable.load(path)


# ----------------------------------------------------------------------------------------- keys


@pytest.mark.parametrize("preset", list(PRESETS))
def test_subnet_layers_are_the_built_networks_layers(preset: str) -> None:
    space = get_space(preset)
    rng = random.Random(0)
    for subnet in [Subnet.smallest(space), Subnet.largest(space)] + [
        Subnet.sample(space, rng) for _ in range(6)
    ]:
        net = StaticMobileNetV3(space, subnet, 10)
        assert [s.key for s in subnet_layers(space, subnet, 10)] == [
            s.key for s in network_layers(net, subnet.r)
        ]
        keys = space_layers(space, [10], [subnet.r], [subnet.w])
        assert all(s.key in keys for s in subnet_layers(space, subnet, 10))


def test_keys_are_the_ones_ofas_latency_table_queries() -> None:
    """OFA's own `MBv3LatencyTable.predict_network_latency` on OFA's network built from nat's net.config
    asks for exactly nat's keys, in order."""
    pytest.importorskip("ofa")
    from ofa.imagenet_classification.networks import MobileNetV3
    from ofa.nas.efficiency_predictor.latency_lookup_table import MBv3LatencyTable

    from nat.export.ofa_config import net_config

    space = get_space("ofa_mbv3")
    rng = random.Random(1)
    for subnet in [Subnet.sample(space, rng) for _ in range(4)] + [Subnet.largest(space, w=1.2, r=224)]:
        nat_net = StaticMobileNetV3(space, subnet, 1000)
        ofa_net = MobileNetV3.build_from_config(net_config(nat_net))
        asked: list[str] = []
        lut = defaultdict(lambda: {"mean": 1.0})
        table = MBv3LatencyTable.__new__(MBv3LatencyTable)
        table.lut = _Recording(lut, asked)
        total = table.predict_network_latency(ofa_net, subnet.r)
        assert asked == [s.key for s in subnet_layers(space, subnet, 1000)]
        assert total == len(asked)


class _Recording(dict):
    def __init__(self, inner, asked) -> None:
        super().__init__()
        self.inner, self.asked = inner, asked

    def __getitem__(self, key):
        self.asked.append(key)
        return self.inner[key]


def test_layer_specs_build_the_layers_they_name() -> None:
    space = get_space("tiny")
    subnet = Subnet.sample(space, random.Random(2))
    x = torch.randn(2, 3, subnet.r, subnet.r)
    specs = subnet_layers(space, subnet, 10)
    with torch.no_grad():
        for spec in specs[:-1]:
            y = spec.build()(x)
            assert tuple(y.shape[1:]) == (spec.c_out, spec.size_out, spec.size_out)
            x = y
        assert specs[-1].build()(x.flatten(1)).shape == (2, 10)


# ----------------------------------------------------------------------------------------- building


def test_build_covers_the_space_and_calibrates(micro_table) -> None:
    path, table = micro_table
    space = get_space("micro")
    assert set(table.entries) == set(space_layers(space, [10]))
    saved = yaml.safe_load(path.read_text())
    assert saved["format"] == "nat.latency_table/1"
    for field in ("device", "device_name", "backend", "batch_size", "threads", "versions", "timing"):
        assert field in saved, field
    assert saved["versions"]["torch"] == torch.__version__
    entry = next(iter(saved["entries"].values()))
    assert set(entry) == {"median", "mean", "std", "count"}
    # the stand-in's networks take exactly 0.9 x their layers + 0.05 ms: the fit recovers it
    cal = saved["calibration"]
    assert len(cal["samples"]) == 4
    assert cal["scale"] == pytest.approx(0.9, abs=1e-4) and cal["offset_ms"] == pytest.approx(0.05, abs=1e-4)
    subnet = Subnet.sample(space, random.Random(3))
    expected = 0.9 * sum(work_ms(s.build(), s.example(1)) for s in subnet_layers(space, subnet, 10)) + 0.05
    assert LatencyTable.load(path).predict_layers(subnet_layers(space, subnet, 10)) == pytest.approx(
        expected, rel=1e-4
    )


def test_an_interrupted_build_keeps_its_entries_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    space = get_space("micro")
    with pytest.raises(KeyboardInterrupt):
        interrupted = WorkBackend(fail_after=2 * CHUNK + 6)
        build_table(path, space, interrupted, [10], [16], calibration_subnets=2, progress=False)
    assert len(LatencyTable.load(path).entries) == 2 * CHUNK  # the chunks finished before the interrupt
    backend = WorkBackend()
    table = build_table(path, space, backend, [10], [16], calibration_subnets=2, progress=False)
    assert len(table.entries) == len(space_layers(space, [10], [16]))
    assert backend.prepared == len(table.entries) - 2 * CHUNK + 2  # the missing layers, the calibration
    again = WorkBackend()
    build_table(path, space, again, [10], [16], calibration_subnets=2, progress=False)
    assert again.prepared == 0  # nothing left to do


def test_a_build_extends_a_table_with_the_same_settings_only(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    space = get_space("micro")
    build_table(path, space, WorkBackend(), [10], [16], calibration_subnets=0, progress=False)
    table = build_table(
        path, space, WorkBackend(), [10, 100], [16, 20], calibration_subnets=0, progress=False
    )
    assert set(table.entries) == set(space_layers(space, [10, 100], [16, 20]))
    with pytest.raises(ConfigError, match="batch_size 1 .asked: 4."):
        build_table(path, space, WorkBackend(batch_size=4), [10], [16], progress=False)


def test_fit_calibration_recovers_an_affine_relation_despite_an_outlier() -> None:
    samples = [{"layer_sum_ms": s, "measured_ms": 1.5 * s + 0.3} for s in (1.0, 2.0, 3.0, 5.0, 7.0, 9.0)]
    cal = fit_calibration(samples)
    assert cal["scale"] == pytest.approx(1.5) and cal["offset_ms"] == pytest.approx(0.3)
    assert cal["median_rel_error"] == pytest.approx(0.0, abs=1e-6)
    # one measurement disturbed by another process (3x too slow) leaves the fit where it was
    disturbed = [*samples[:2], {"layer_sum_ms": 3.0, "measured_ms": 14.4}, *samples[3:]]
    cal = fit_calibration(disturbed)
    assert cal["scale"] == pytest.approx(1.5, rel=0.05) and cal["offset_ms"] == pytest.approx(0.3, abs=0.3)
    # with two samples only the offset is fitted
    cal = fit_calibration(samples[:2])
    assert cal["scale"] == 1.0 and cal["offset_ms"] == pytest.approx(np.median([0.8, 1.3]))


def test_real_torch_build_and_measurement(tmp_path: Path) -> None:
    """The real backend on a slice of the micro space: every entry a positive time, and the network's
    measured latency within a factor of the calibrated prediction."""
    space = get_space("micro")
    fast = TimingSettings(warmup=1, repeats=3, min_block_ms=0.2, rounds=2)
    backend = make_backend("cpu", 1, 1, fast)
    table = build_table(
        tmp_path / "t.yaml", space, backend, [10], [16], calibration_subnets=3, progress=False
    )
    assert all(e["median"] > 0 and e["count"] == 6 for e in table.entries.values())
    subnet = Subnet.largest(space, r=16)
    measured = measure_network_ms(backend, StaticMobileNetV3(space, subnet, 10), 16).median
    predicted = table.predict_layers(subnet_layers(space, subnet, 10))
    assert 0.2 < predicted / measured < 5


def test_onnxruntime_backend_times_an_exported_layer() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    space = get_space("micro")
    spec = subnet_layers(space, Subnet.largest(space, r=16), 10)[3]
    backend = make_backend("onnxruntime", 1, 2, TimingSettings(warmup=1, repeats=2, min_block_ms=0.1))
    timing = backend.time_module(spec.build(), spec.example(2))
    assert timing.median > 0 and timing.count == 2 and len(timing.blocks) == 2
    assert backend.describe()["onnxruntime"]


def test_runtime_backends_time_a_layer_in_fp32_and_int8() -> None:
    """`--device onnxruntime --int8` and `--device executorch [--int8]`: each layer in the form `nat
    export` delivers it (the int8 layer holds quantize/dequantize nodes), each table under its own
    backend name so that tables of different forms never mix."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("executorch")
    space = get_space("micro")
    spec = subnet_layers(space, Subnet.smallest(space, r=16), 10)[3]
    settings = TimingSettings(warmup=1, repeats=2, min_block_ms=0.1)
    names = []
    for device, int8 in (("onnxruntime", True), ("executorch", False), ("executorch", True)):
        backend = make_backend(device, 1, 1, settings, int8=int8)
        timing = backend.time_module(spec.build(), spec.example(1))
        assert timing.median > 0 and timing.count == 2
        names.append(backend.name)
    assert names == ["onnxruntime-int8", "executorch", "executorch-int8"]
    with pytest.raises(ConfigError, match="batch 1 only"):
        make_backend("executorch", 1, 2, settings)
    with pytest.raises(ConfigError, match="--device onnxruntime or executorch"):
        make_backend("cpu", 1, 1, settings, int8=True)


# ------------------------------------------------------------------------------- reading, predicting


def test_ofa_format_tables_load_per_resolution_and_predict_plain_sums(tmp_path: Path) -> None:
    space = get_space("micro").model_copy(update={"resolutions": (16, 20)})
    folder = tmp_path / "ofa"
    folder.mkdir()
    values = {}
    for r in space.resolutions:
        keys = space_layers(space, [10], [r])
        entries = {k: {"count": 10, "mean": 0.001 * (i + 1)} for i, k in enumerate(keys)}
        values.update({k: v["mean"] for k, v in entries.items()})
        (folder / f"{r}_lookup_table.yaml").write_text(yaml.safe_dump(entries))
    table = LatencyTable.load(folder)
    assert table.is_ofa and table.scale == 1.0 and table.offset_ms == 0.0
    predictor = LatencyPredictor(table, space, 10)
    genomes = sample_genomes(space, 50, np.random.default_rng(0))
    from nat.space.genome import decode

    expected = [sum(values[s.key] for s in subnet_layers(space, decode(g, space), 10)) for g in genomes]
    np.testing.assert_allclose(predictor(genomes), expected, rtol=1e-9)


def test_predictor_matches_layer_sums_and_knows_the_exact_minimum(micro_table, tmp_path: Path) -> None:
    _, table = micro_table
    space = get_space("micro")
    predictor = LatencyPredictor(table, space, 10)
    from nat.space.genome import decode

    genomes = sample_genomes(space, 40, np.random.default_rng(1))
    each = [table.predict_layers(subnet_layers(space, decode(g, space), 10)) for g in genomes]
    np.testing.assert_allclose(predictor(genomes), each, rtol=1e-9)
    # the minimum by brute force over a small space
    small = SearchSpace(
        **{**space.model_dump(), "kernel_sizes": (3, 5), "expand_ratios": (3,), "depths": (1, 2)}
    )
    small = small.model_copy(update={"resolutions": (16, 20)})
    table_small = build_table(
        tmp_path / "s.yaml", small, WorkBackend(), [10], calibration_subnets=0, progress=False
    )
    p = LatencyPredictor(table_small, small, 10)
    per_stage = [[(k,) for k in (3, 5)] + list(itertools.product((3, 5), repeat=2))]
    best = min(
        p.subnet(Subnet(ks=sum(stages, ()), e=(3,) * sum(map(len, stages)), d=tuple(map(len, stages)), r=r))
        for r in (16, 20)
        for stages in itertools.product(*per_stage * 5)
    )
    assert p.minimum() == pytest.approx(best)


def test_a_table_that_does_not_cover_the_space_names_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    space = get_space("micro")
    build_table(path, space, WorkBackend(), [10], [16, 20], calibration_subnets=0, progress=False)
    table = LatencyTable.load(path)
    with pytest.raises(
        ConfigError,
        match=r"resolution 24 width 1 \(47 of 96 .*resolution 28 .*--resolutions 24 28 --num-classes 10",
    ):
        LatencyPredictor(table, space, 10)
    narrow = space.model_copy(update={"resolutions": (16, 20)})
    with pytest.raises(ConfigError, match="the classifier for 7 classes.*--num-classes 7"):
        LatencyPredictor(table, narrow, 7)
    other = narrow.model_copy(update={"se_reduction": 8})
    with pytest.raises(ConfigError, match="reduction 4"):
        LatencyPredictor(table, other, 10)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "expected a YAML mapping"),
        ("format: other/1\nentries: {}", "unknown format"),
        ("'Conv-input:16x16x3-output:8x8x8': {count: 1}", "needs a 'mean'"),
        ("'Conv-input:16x16x3-output:8x8x8': {mean: -1}", "not a latency"),
        ("a: [", "not valid YAML"),
    ],
)
def test_bad_table_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        LatencyTable.load(path)


# ----------------------------------------------------------------------------------------- search


def test_config_checks_latency_tables() -> None:
    base = {"data": {"dataset": "digits"}}
    with pytest.raises(ConfigError, match="need a table each"):
        load_config(overrides={**base, "objectives": ["top1", "latency:phone"]})
    with pytest.raises(ConfigError, match="no objective uses them"):
        load_config(overrides={**base, "latency": {"tables": {"phone": "x.yaml"}}})
    with pytest.raises(ConfigError, match="'latency' is not an objective"):
        load_config(overrides={**base, "latency": {"table": "x.yaml"}})
    with pytest.raises(ConfigError, match="a table latency can be bounded only"):
        load_config(overrides={**base, "constraints": {"latency:phone": 3.0}})
    config = load_config(
        overrides={
            **base,
            "objectives": ["top1", "params", "latency", "latency:gpu_b8"],
            "latency": {"table": "a.yaml", "tables": {"gpu_b8": ["b.yaml", "c.yaml"]}},
            "constraints": {"latency:gpu_b8": 2.0},
        }
    )
    assert config.latency_tables() == {"latency": "a.yaml", "latency:gpu_b8": ["b.yaml", "c.yaml"]}


def test_objective_set_predicts_table_latency_exactly(micro_table, tmp_path: Path) -> None:
    _, table = micro_table
    space = get_space("micro")
    names = ["top1", "params", "latency", "latency:cpu"]
    problem = ObjectiveSet(names, space, 10, {"latency:cpu": 1e9}, {"latency:cpu": table})
    assert problem.measured_latency and problem.measured == ["top1", "latency"]
    genomes = sample_genomes(space, 10, np.random.default_rng(2))
    values = problem.exact(genomes)
    np.testing.assert_allclose(values["latency:cpu"], LatencyPredictor(table, space, 10)(genomes))
    table_only = ObjectiveSet(["top1", "latency"], space, 10, {"latency": 1e-6}, {"latency": table})
    assert not table_only.measured_latency
    subnet = Subnet.smallest(space)
    assert table_only.exact_values(subnet)["latency"] == pytest.approx(
        table.predict_layers(subnet_layers(space, subnet, 10))
    )
    with pytest.raises(ConfigError, match="cannot be met: the fastest subnet"):
        table_only.check_satisfiable(1.0)


FAST = {
    "initial_samples": 6,
    "iterations": 1,
    "candidates_per_iteration": 2,
    "adaptation": {"initial_epochs": 1.0, "epochs": 0.3, "max_steps": 3},
    "nsga3": {"pop_size": 12, "generations": 4},
    "evaluation": {"calibration_images": 64},
    "data": {"val_size": 120},
    "finalize": {"models": 0},
}


def test_search_with_a_named_latency_table(micro_table, tmp_path: Path) -> None:
    path, table = micro_table
    config = load_config(
        preset="smoke",
        overrides={
            **FAST,
            "objectives": ["top1", "params", "latency:cpu"],
            "latency": {"tables": {"cpu": str(path)}},
        },
    )
    run = tmp_path / "run"
    with NATSearch(config, run) as search:
        search.run()
        records = search.archive.records
    predictor = LatencyPredictor(table, get_space("micro"), 10)
    assert any(r.phase == "candidate" for r in records)
    for r in records:
        assert "latency" not in r.values
        assert r.values["latency:cpu"] == pytest.approx(predictor.subnet(r.subnet))
    copy = run / "latency_table_cpu.yaml"
    assert copy.is_file() and LatencyTable.load(copy).entries == table.entries
    front = json.loads((run / "front.json").read_text())
    assert all("latency:cpu" in m for m in front)
    # the run keeps predicting with its copy, whatever happens to the file the config named
    path.write_text("damaged: [")
    config = config.model_copy(update={"iterations": 2})
    with NATSearch(config, run, resume=True) as search:
        search.run()
        assert max(r.iteration for r in search.archive.records) == 2
    assert "latency:cpu (ms)" in (run / "report.html").read_text()


# ----------------------------------------------------------------------------------------- CLI


def test_cli_build_predict_measure(tmp_path: Path, capsys) -> None:
    table = tmp_path / "t.yaml"
    common = ["--threads", "1", "--warmup", "0", "--repeats", "2", "--min-block-ms", "0.1"]
    args = ["latency", "build", "--space", "micro", "--resolutions", "16", "--num-classes", "10"]
    assert main([*args, *common, "--calibration-subnets", "2", "--out", str(table)]) == 0
    assert "layer entries" in capsys.readouterr().out
    subnet = tmp_path / "net.subnet"
    subnet.write_text(Subnet.smallest(get_space("micro"), r=16).to_json())
    assert (
        main(
            [
                "latency",
                "predict",
                str(table),
                str(subnet),
                "--space",
                "micro",
                "--num-classes",
                "10",
                "--json",
            ]
        )
        == 0
    )
    predicted = json.loads(capsys.readouterr().out)
    assert predicted["latency_ms"] > 0 and predicted["layers"] == 2 + 10 + 4
    assert predicted["latency_ms"] == pytest.approx(
        LatencyTable.load(table).predict_layers(
            subnet_layers(get_space("micro"), Subnet.from_file(subnet), 10)
        )
    )
    assert (
        main(
            ["latency", "measure", str(subnet), "--space", "micro", "--num-classes", "10", *common, "--json"]
        )
        == 0
    )
    measured = json.loads(capsys.readouterr().out)
    assert measured["latency_ms"] > 0 and measured["threads"] == 1 and measured["count"] == 2 * 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "{missing}", "{subnet}", "--space", "micro"], "latency table not found"),
        (
            ["predict", "{table}", "{subnet}", "--space", "micro", "--num-classes", "1000"],
            "no entry for 1 layer.*Logits.*output:1000",
        ),
        (
            ["predict", "{table}", "{subnet}", "--space", "tiny", "--num-classes", "10"],
            "outside the search space",
        ),
        (["predict", "{table}", "{subnet}", "--space", "micro"], "give --num-classes"),
        (["predict", "{table}", "{subnet}"], "give --space"),
        (["build", "--space", "nope", "--out", "{out}"], "unknown search space preset"),
        (["build", "--space", "micro", "--resolutions", "17", "--out", "{out}"], r"\[17\] not in the space"),
        (["build", "--space", "micro", "--device", "auto", "--out", "{out}"], "one device"),
        (["build", "--space", "micro", "--device", "tpu", "--out", "{out}"], "unknown device|not supported"),
        (["build", "--space", "micro", "--out", "{nodir}"], "does not exist"),
        (["measure", "{missing}"], "no such file"),
    ],
)
def test_cli_errors_are_one_line(micro_table, tmp_path: Path, capsys, args: list[str], message: str) -> None:
    table, _ = micro_table
    subnet = tmp_path / "net.subnet"
    subnet.write_text(Subnet.smallest(get_space("micro"), r=16).to_json())
    fill = {
        "missing": str(tmp_path / "none.yaml"),
        "subnet": str(subnet),
        "table": str(table),
        "out": str(tmp_path / "new.yaml"),
        "nodir": str(tmp_path / "no" / "t.yaml"),
    }
    before = table.read_bytes()
    assert main(["latency", *[a.format(**fill) for a in args]]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nat latency: error: "), err
    import re

    assert re.search(message, err[0]), err[0]
    assert table.read_bytes() == before


def test_encode_round_trip_of_predictions(micro_table, tmp_path: Path) -> None:
    """`LatencyPredictor.subnet` and the batch call agree (the search uses both)."""
    _, table = micro_table
    space = get_space("micro")
    predictor = LatencyPredictor(table, space, 10)
    subnet = Subnet.sample(space, random.Random(9))
    assert predictor.subnet(subnet) == pytest.approx(float(predictor(encode(subnet, space)[None])[0]))


def test_search_with_a_missing_or_short_table_fails_before_training(
    micro_table, tmp_path: Path, capsys
) -> None:
    table, _ = micro_table
    base = ["search", "--preset", "smoke", "--set", "objectives=[top1, latency]"]
    out = tmp_path / "run"
    assert main([*base, "--out", str(out), "--set", f"latency.table={tmp_path / 'none.yaml'}"]) == 1
    assert "latency table not found" in capsys.readouterr().err
    assert not (out / "archive.jsonl").exists()
    narrow = tmp_path / "narrow.yaml"
    build_table(narrow, get_space("micro"), WorkBackend(), [10], [16], calibration_subnets=0, progress=False)
    assert main([*base, "--out", str(tmp_path / "run2"), "--set", f"latency.table={narrow}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "does not cover the space 'micro'" in err[0] and "--resolutions 20 24 28" in err[0]
    )
    assert not (tmp_path / "run2" / "archive.jsonl").exists()


def test_cli_predicts_model_folders_and_net_configs_like_subnets(micro_table, tmp_path: Path, capsys) -> None:
    """A model folder and a net.config (NAT's release format) give the same prediction as the subnet."""
    from nat.export import save_model
    from nat.export.ofa_config import net_config

    table, _ = micro_table
    space = get_space("micro")
    subnet = Subnet.sample(space, random.Random(4))
    model = StaticMobileNetV3(space, subnet, 10)
    folder = save_model(model, tmp_path / "model")
    config = tmp_path / "net.config"
    config.write_text(json.dumps({**net_config(model), "img_size": subnet.r}))
    (tmp_path / "net.subnet").write_text(subnet.to_json())
    predictions = []
    for args in (
        [str(tmp_path / "net.subnet"), "--space", "micro", "--num-classes", "10"],
        [str(folder)],
        [str(folder / "net.subnet")],  # a model folder's subnet: space and classes from its model.json
        [str(config)],
    ):
        assert main(["latency", "predict", str(table), *args, "--json"]) == 0
        predictions.append(json.loads(capsys.readouterr().out)["latency_ms"])
    assert all(p == pytest.approx(predictions[0]) for p in predictions)
    fast = ["--threads", "1", "--warmup", "0", "--repeats", "1", "--rounds", "1", "--min-block-ms", "0.1"]
    assert main(["latency", "measure", str(folder), *fast, "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert (
        measured["latency_ms"] > 0 and measured["model"] == str(folder) and measured["resolution"] == subnet.r
    )
    no_size = tmp_path / "bare.config"
    no_size.write_text(json.dumps({k: v for k, v in net_config(model).items() if k != "img_size"}))
    assert main(["latency", "predict", str(table), str(no_size)]) == 1
    assert "no img_size: give --resolution" in capsys.readouterr().err


@pytest.mark.cuda
def test_cuda_build_and_measurement(tmp_path: Path) -> None:
    """On a GPU: a table built with the CUDA backend predicts the measured latency within a factor."""
    space = get_space("micro")
    backend = make_backend("cuda", 1, 8, TimingSettings(warmup=2, repeats=3, min_block_ms=1.0, rounds=2))
    table = build_table(
        tmp_path / "t.yaml", space, backend, [10], [16], calibration_subnets=4, progress=False
    )
    assert table.meta["device_name"] == torch.cuda.get_device_name(0)
    subnet = Subnet.largest(space, r=16)
    measured = measure_network_ms(backend, StaticMobileNetV3(space, subnet, 10), 16).median
    assert 0.2 < table.predict_layers(subnet_layers(space, subnet, 10)) / measured < 5
