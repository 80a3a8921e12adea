"""The NAT loop (the paper's Algorithm 1) with a run directory that survives being killed.

Each iteration ``i >= 1`` is a pure function of the archive as it stood before ``i`` and of seeds
derived from ``(seed, i)``: surrogates -> NSGA-III -> candidates -> adaptation -> evaluations. That is
what makes resuming exact: after a kill, the candidates are recomputed (identically), evaluations
already in ``archive.jsonl`` are skipped, and adaptation is redone only if the supernet checkpoint
does not already carry iteration ``i`` (the tag is stored inside the checkpoint, written atomically).
"""

from __future__ import annotations

import json
import logging
import math
import platform
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from nat.data import TaskData, load_from_config
from nat.errors import CheckpointError, ConfigError
from nat.search.adaptation import adapt_supernet
from nat.search.archive import Archive, Record, write_json_atomic
from nat.search.config import SearchConfig
from nat.search.distribution import GenomeDistribution, elite
from nat.search.evaluator import SubnetEvaluator
from nat.search.front import hypervolume, non_dominated
from nat.search.objectives import ObjectiveSet
from nat.search.problem import run_nsga3, run_single_objective_ga
from nat.search.selection import select_by_hypervolume, select_diverse
from nat.space.definition import SearchSpace, get_space, space_over
from nat.space.genome import decode, encode
from nat.space.subnet import Subnet
from nat.supernet import Supernet
from nat.supernet.checkpoint import load_supernet, read_metadata, save_supernet
from nat.surrogates import ModelScore, SwitchReport, adaptive_switching, make_surrogate

log = logging.getLogger("nat.search")

BUILTIN_DIR = Path(__file__).resolve().parents[1] / "assets"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use device: cpu")
    return device


def builtin_supernet(name: str) -> Path:
    path = BUILTIN_DIR / f"supernet_{name}.safetensors"
    if not path.is_file():
        known = sorted(p.stem.removeprefix("supernet_") for p in BUILTIN_DIR.glob("supernet_*.safetensors"))
        raise CheckpointError(f"no built-in supernet {name!r}; shipped with nat: {known or 'none'}")
    return path


def seed_for(seed: int, *parts: int) -> int:
    """A stable per-phase seed, so phases can be re-run alone after a resume."""
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0])


class NATSearch:
    """One run of NAT (or of a baseline strategy) in a run directory."""

    def __init__(self, config: SearchConfig, out_dir: str | Path, resume: bool = False) -> None:
        self.out = Path(out_dir)
        self.config = config
        archive_path = self.out / "archive.jsonl"
        if not resume and archive_path.exists() and archive_path.stat().st_size > 0:
            raise ConfigError(
                f"{self.out} already holds a run; continue it with `nat search --resume "
                f"{self.out}` or choose another --out"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        self._setup_logging()
        write_json_atomic(
            self.out / "versions.json",
            {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "numpy": np.__version__,
                "platform": platform.platform(),
            },
        )
        config_text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
        tmp = self.out / "config.yaml.tmp"
        tmp.write_text(config_text)
        tmp.replace(self.out / "config.yaml")  # atomic: a kill never leaves a half-written config
        self.device = resolve_device(config.device)
        self.task: TaskData = load_from_config(config.data, config.seed)
        self.supernets = self._load_supernets()
        first = next(iter(self.supernets.values()))
        self.space: SearchSpace = first.space
        missing = [w for w in self.space.width_mults if not any(math.isclose(w, k) for k in self.supernets)]
        if missing:
            # the search space covers only the widths we have supernets for
            self.space = self.space.model_copy(update={"width_mults": tuple(sorted(self.supernets))})
            for net in self.supernets.values():
                net.space = self.space
        self.objectives = ObjectiveSet(config.objectives, self.space, self.task.num_classes)
        self.archive = Archive(archive_path)
        self.evaluator = SubnetEvaluator(self.supernets, self.task, config, self.device)
        self.hv_scale = self._hv_scale()

    # ----------------------------------------------------------------- set-up helpers
    def _setup_logging(self) -> None:
        handler = logging.FileHandler(self.out / "search.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        self._log_handler = handler

    def _checkpoint_path(self, width: float) -> Path:
        return self.out / f"supernet_w{width:g}.safetensors"

    def _load_supernets(self) -> dict[float, Supernet]:
        cfg = self.config
        sources = cfg.supernet if isinstance(cfg.supernet, list) else [cfg.supernet]
        nets: dict[float, Supernet] = {}
        for source in sources:
            if source is None:
                space = space_over(get_space("tiny"), cfg.space)
                for w in space.width_mults:
                    torch.manual_seed(seed_for(cfg.seed, 99, int(w * 100)))
                    nets[w] = Supernet(space, w, self.task.num_classes)
                continue
            path = (
                builtin_supernet(source.removeprefix("builtin:"))
                if source.startswith("builtin:")
                else Path(source).expanduser()
            )
            net = load_supernet(path, num_classes=self.task.num_classes)
            if cfg.space is not None:
                wanted = space_over(net.space, cfg.space)
                if wanted.model_dump(exclude={"name", "resolutions", "width_mults"}) != net.space.model_dump(
                    exclude={"name", "resolutions", "width_mults"}
                ):
                    raise ConfigError(
                        f"space {cfg.space!r} does not describe the supernet in {path}: only "
                        "resolutions and width_mults may differ from the supernet's own space"
                    )
                net.space = wanted
            if net.width_mult in nets:
                raise ConfigError(f"two supernets of width {net.width_mult} given: {sources}")
            nets[net.width_mult] = net
        for w, net in nets.items():
            ckpt = self._checkpoint_path(w)
            if ckpt.exists():  # a resumed run continues from its own adapted weights
                adapted = load_supernet(ckpt)
                net.load_state_dict(adapted.state_dict())
            net.to(self.device)
        return dict(sorted(nets.items()))

    def _adapted_iteration(self, width: float) -> int:
        ckpt = self._checkpoint_path(width)
        if not ckpt.exists():
            return -1
        return int(json.loads(read_metadata(ckpt).get("extra", "{}")).get("iteration", -1))

    def _hv_scale(self) -> np.ndarray:
        """Per-objective scale for hypervolume: 1 for error, the largest subnet's value for complexity."""
        scale = []
        largest = encode(Subnet.largest(self.space), self.space)[None]
        exact = self.objectives.exact(largest)
        for name in self.objectives.names:
            scale.append(1.0 if name == "top1" else float(exact.get(name, [np.nan])[0]))
        return np.array(scale)

    # ----------------------------------------------------------------- archive views
    def _matrix(self, records: list[Record]) -> np.ndarray:
        return self.objectives.minimised({n: [r.values[n] for r in records] for n in self.objectives.names})

    def _feasible(self, records: list[Record]) -> list[Record]:
        return [
            r
            for r in records
            if all(r.values.get(n, -math.inf) <= b for n, b in self.config.constraints.items())
        ]

    def front(self, records: list[Record] | None = None) -> list[Record]:
        records = self._feasible(self.archive.current() if records is None else records)
        if not records:
            return []
        return [records[i] for i in non_dominated(self._matrix(records))]

    def hypervolume(self, records: list[Record]) -> float:
        return self.front_hypervolume(self.front(records))

    def front_hypervolume(self, front: list[Record]) -> float:
        """Hypervolume of an already computed front (error and complexity scaled to [0, 1])."""
        if not front:
            return 0.0
        F = self._matrix(front)
        return hypervolume(F / self._hv_divisor(F))

    def _hv_divisor(self, F: np.ndarray) -> np.ndarray:
        """What each objective column is divided by for hypervolume (measured ones: their maximum)."""
        return np.where(np.isfinite(self.hv_scale), self.hv_scale, F.max(0).clip(1e-12))

    # ----------------------------------------------------------------- phases
    def _evaluate(self, subnets: list[Subnet], iteration: int, phase: str) -> None:
        todo = [s for s in subnets if not self.archive.has(iteration, phase, s)]
        if not todo:
            return
        latency = "latency" in self.objectives.names
        names = [n for n in self.objectives.names if n not in ("top1", "latency")]
        for subnet in tqdm(todo, desc=f"iter {iteration} evaluate {phase}", leave=False, disable=None):
            genome = encode(subnet, self.space)
            values = {k: float(v[0]) for k, v in self.objectives.exact(genome[None], names).items()}
            values.update(self.evaluator.evaluate(subnet, latency))
            self.archive.append(
                Record(iteration, phase, subnet, tuple(int(g) for g in genome), values["top1"], values)
            )

    def _adapt(self, iteration: int, genomes: np.ndarray, epochs: float) -> None:
        distribution = GenomeDistribution.from_genomes(genomes, self.space)
        if self.config.adaptation.uniform_mix > 0:
            distribution = distribution.mixed_with_uniform(self.config.adaptation.uniform_mix)
        for wi, (width, net) in enumerate(self.supernets.items()):
            if self._adapted_iteration(width) >= iteration:
                continue
            if epochs > 0:
                adapt_supernet(
                    net,
                    self.task,
                    distribution,
                    width,
                    self.config,
                    epochs,
                    seed=seed_for(self.config.seed, iteration, wi),
                    device=self.device,
                    desc=f"iter {iteration} adapt w{width:g}",
                )
            save_supernet(net, self._checkpoint_path(width), extra={"iteration": iteration})

    def initial_subnets(self) -> list[Subnet]:
        rng = random.Random(seed_for(self.config.seed, 0))
        widths = sorted(self.supernets)
        subnets = [Subnet.smallest(self.space, w=widths[0]), Subnet.largest(self.space, w=widths[-1])]
        seen = set(subnets)
        while len(subnets) < self.config.initial_samples:
            s = Subnet.sample(self.space, rng)
            if s not in seen:
                seen.add(s)
                subnets.append(s)
        return subnets

    def _surrogate_problem(self, records: list[Record], iteration: int):
        """Fit the accuracy (and latency) surrogates; return the batch evaluator for pymoo and a report."""
        genomes = np.array([r.genome for r in records])
        top1_model, report = self._fit_surrogate(genomes, np.array([r.top1 for r in records]), iteration, 1)
        latency_model = None
        if "latency" in self.objectives.names:
            latency = np.array([r.values["latency"] for r in records])
            latency_model, _ = self._fit_surrogate(genomes, latency, iteration, 2)
        names = self.objectives.names
        bounds = self.config.constraints

        def evaluate(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            values: dict[str, Any] = self.objectives.exact(x, sorted(set(names) | set(bounds)))
            values["top1"] = top1_model.predict(x)
            if latency_model is not None:
                values["latency"] = latency_model.predict(x)
            F = self.objectives.minimised(values)
            G = (
                np.stack([np.asarray(values[n]) - b for n, b in bounds.items()], axis=1)
                if bounds
                else np.zeros((len(x), 0))
            )
            return F, G

        return evaluate, report

    def _fit_surrogate(self, genomes: np.ndarray, y: np.ndarray, iteration: int, which: int):
        """Adaptive switching; with too few points for cross-validation, the first model alone."""
        cfg = self.config.surrogate
        seed = seed_for(self.config.seed, iteration, which)
        folds = min(cfg.folds, len(y) // 3)
        if folds >= 2 and len(cfg.models) > 1:
            return adaptive_switching(
                genomes, y, self.space, models=cfg.models, folds=folds, seed=seed, repeats=cfg.repeats
            )
        model = make_surrogate(cfg.models[0], self.space, seed=seed).fit(genomes, y)
        return model, SwitchReport(
            chosen=cfg.models[0],
            folds=0,
            n_samples=len(y),
            seed=seed,
            scores={cfg.models[0]: ModelScore(cfg.models[0], [], *[float("nan")] * 4)},
        )

    def _candidates(self, iteration: int) -> tuple[list[Subnet], dict[str, Any]]:
        cfg = self.config
        records = self.archive.current(before_iteration=iteration)
        known = {r.subnet for r in self.archive.records if r.iteration < iteration}
        seed = seed_for(cfg.seed, iteration, 3)
        k = cfg.candidates_per_iteration
        if cfg.strategy == "random":
            rng = random.Random(seed)
            out: list[Subnet] = []
            while len(out) < k:
                s = Subnet.sample(self.space, rng)
                if s not in known and s not in out and self._satisfies(s):
                    out.append(s)
            return out, {"strategy": "random"}
        evaluate, report = self._surrogate_problem(records, iteration)
        genomes = np.array([r.genome for r in records])
        n_constr = len(cfg.constraints)
        if cfg.strategy == "evolution":
            X, F = run_single_objective_ga(
                self.space, evaluate, n_constr, genomes, cfg.nsga3.pop_size, cfg.nsga3.generations, seed
            )
        else:
            X, F = run_nsga3(
                self.space,
                evaluate,
                len(self.objectives.names),
                n_constr,
                genomes,
                cfg.nsga3.pop_size,
                cfg.nsga3.generations,
                seed,
                cfg.nsga3.crossover_prob,
                cfg.nsga3.mutation_eta,
                cfg.nsga3.n_partitions,
            )
        subnets = [decode(x, self.space) for x in X]
        fresh = [i for i, s in enumerate(subnets) if s not in known and self._satisfies(s)]
        fresh = [i for j, i in enumerate(fresh) if subnets[i] not in {subnets[f] for f in fresh[:j]}]
        if cfg.strategy == "evolution":
            order = sorted(fresh, key=lambda i: F[i, 0])[:k]
        elif not fresh:
            order = []
        elif cfg.candidate_selection == "hypervolume":
            feasible = self._feasible(records)
            F_archive = (
                evaluate(np.array([r.genome for r in feasible]))[0] if feasible else np.zeros((0, F.shape[1]))
            )
            divisor = self._hv_divisor(np.vstack([F_archive, F[fresh]]))
            picked = select_by_hypervolume(F[fresh] / divisor, F_archive / divisor, k, seed)
            order = [fresh[i] for i in picked]
        else:
            order = [fresh[i] for i in select_diverse(F[fresh], k, seed)]
        info = {
            "strategy": cfg.strategy,
            "surrogate": report.chosen,
            "tau": float(report.scores[report.chosen].mean),
        }
        return [subnets[i] for i in order], info

    def _satisfies(self, subnet: Subnet) -> bool:
        if not self.config.constraints:
            return True
        exact = self.objectives.exact(encode(subnet, self.space)[None], list(self.config.constraints))
        return all(float(exact[n][0]) <= b for n, b in self.config.constraints.items() if n in exact)

    def _reevaluation_set(self, iteration: int) -> list[Subnet]:
        mode = self.config.evaluation.reevaluate
        if mode == "none" or self.config.adaptation.epochs == 0:
            return []
        records = self.archive.current(before_iteration=iteration)
        chosen = records if mode == "all" else self.front(records)
        return [r.subnet for r in chosen]

    # ----------------------------------------------------------------- the loop
    def run(self) -> list[Record]:
        cfg = self.config
        state_path = self.out / "state.json"
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        elapsed = float(state.get("elapsed_s", 0.0))
        start = time.monotonic()
        log.info(
            "NAT run in %s: strategy %s, objectives %s, constraints %s, %d supernet(s), task %s (%d classes)",
            self.out,
            cfg.strategy,
            cfg.objectives,
            cfg.constraints or "none",
            len(self.supernets),
            self.task.name,
            self.task.num_classes,
        )
        initial = self.initial_subnets()
        self._adapt(0, np.array([encode(s, self.space) for s in initial]), cfg.adaptation.initial_epochs)
        self._evaluate(initial, 0, "initial")
        self._finish_iteration(0, {"strategy": cfg.strategy}, state, elapsed + time.monotonic() - start)
        for iteration in range(1, cfg.iterations + 1):
            spent = elapsed + time.monotonic() - start
            if cfg.time_budget_minutes is not None and spent > cfg.time_budget_minutes * 60:
                log.info(
                    "time budget of %.1f min used up after iteration %d",
                    cfg.time_budget_minutes,
                    iteration - 1,
                )
                break
            candidates, info = self._candidates(iteration)
            records = self.archive.current(before_iteration=iteration)
            elite_genomes = elite(
                np.array([r.genome for r in records]), self._matrix(records), cfg.adaptation.elite_fraction
            )
            self._adapt(iteration, elite_genomes, cfg.adaptation.epochs)
            self._evaluate(candidates, iteration, "candidate")
            self._evaluate(self._reevaluation_set(iteration), iteration, "reeval")
            self._finish_iteration(iteration, info, state, elapsed + time.monotonic() - start)
        front = self.front()
        write_json_atomic(self.out / "front.json", [r.to_json() for r in front])
        log.removeHandler(self._log_handler)
        self._log_handler.close()
        return front

    def _finish_iteration(
        self, iteration: int, info: dict[str, Any], state: dict[str, Any], elapsed: float
    ) -> None:
        current = self.archive.current()
        front = self.front(current)
        hv = self.front_hypervolume(front)
        best = max((r.top1 for r in front), default=float("nan"))
        surrogate = f", surrogate {info['surrogate']} (tau {info['tau']:.3f})" if "surrogate" in info else ""
        log.info(
            "iteration %d: archive %d, front %d, best top1 %.4f, hypervolume %.4f%s",
            iteration,
            len(current),
            len(front),
            best,
            hv,
            surrogate,
        )
        write_json_atomic(self.out / "front.json", [r.to_json() for r in front])
        state.update({"iteration": iteration, "elapsed_s": elapsed, "hypervolume": hv, **info})
        history = state.setdefault("history", [])
        history[:] = [h for h in history if h["iteration"] != iteration]
        history.append(
            {
                "iteration": iteration,
                "hypervolume": hv,
                "front_size": len(front),
                "archive_size": len(current),
                **info,
            }
        )
        write_json_atomic(self.out / "state.json", state)
