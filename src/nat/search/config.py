"""`SearchConfig`: everything a NAT run needs, validated from YAML (every CLI flag maps to a field)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nat.config_io import read_yaml_mapping, validation_message
from nat.data.config import DataConfig
from nat.errors import ConfigError

BUILTIN_OBJECTIVES = ("top1", "madds", "params", "latency")
PRESET_DIR = Path(__file__).parent / "presets"


class SurrogateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: list[str] = Field(
        default_factory=lambda: ["rbf", "gp", "cart", "mlp", "ensemble"],
        min_length=1,
        description="candidates for adaptive switching (a single name fixes the model); 'ensemble' is "
        "the mean of the other candidates",
    )
    folds: int = Field(5, ge=2)
    repeats: int = Field(
        1, ge=1, description="repeated k-fold rounds (1: NAT's exact rule; more: steadier choice)"
    )

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        from nat.surrogates import available_surrogates

        known = [m for m in available_surrogates() if m != "adaptive"]
        unknown = [m for m in value if m not in known]
        if unknown:
            raise ValueError(f"unknown surrogate(s) {unknown}; choose from {known}")
        if len(set(value)) != len(value):
            raise ValueError(f"surrogate models must be distinct, got {value}")
        if "ensemble" in value and len(value) == 2:
            raise ValueError(
                "'ensemble' averages the other listed models, so list at least two besides it "
                "(or 'ensemble' alone for the mean of rbf, gp, cart and mlp)"
            )
        return value


class NSGA3Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pop_size: int = Field(100, ge=4)
    generations: int = Field(50, ge=1)
    crossover_prob: float = Field(0.9, ge=0, le=1)
    mutation_eta: float = Field(1.0, gt=0, description="polynomial mutation distribution index")
    n_partitions: int | None = Field(None, ge=1, description="Das-Dennis partitions; default from pop size")


class AdaptationConfig(BaseModel):
    """Online supernet adaptation (NAT section 3.4): epochs per iteration and the optimiser."""

    model_config = ConfigDict(extra="forbid")
    initial_epochs: float = Field(1.0, ge=0, description="epochs before the first evaluation")
    epochs: float = Field(1.0, ge=0, description="epochs per iteration")
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(4e-5, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    elite_fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="share of the archive (best fronts first) that forms the sampling distribution",
    )
    uniform_mix: float = Field(
        0.0,
        ge=0,
        le=1,
        description="weight of the uniform distribution mixed into each variable of the archive distribution "
        "(0: the paper; >0 keeps choices the elite lacks, e.g. a resolution, in training)",
    )
    max_steps: int | None = Field(None, ge=1, description="cap on steps per adaptation (for quick runs)")


class EvaluationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    calibration_images: int = Field(500, ge=1, description="training images used for BN recalibration")
    max_val_images: int | None = Field(None, ge=1, description="cap on search-validation images")
    reevaluate: Literal["all", "front", "none"] = Field(
        "all", description="archive members re-measured after each adaptation (the paper: all)"
    )


class LatencyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch_size: int = Field(1, ge=1)
    warmup: int = Field(3, ge=0)
    repeats: int = Field(10, ge=1)
    device: str | None = Field(None, description="default: the run's device")


class SearchConfig(BaseModel):
    """A NAT run. See README 'Configuration' for every field."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    device: str = Field("auto", description="'auto' (cuda when available), 'cpu', 'cuda', 'cuda:1' ...")
    threads: int | None = Field(
        None,
        ge=1,
        description="torch CPU threads for `nat search` / `nat quickstart` (None: torch's default); on "
        "a machine shared with other jobs 1 is often fastest",
    )
    supernet: str | list[str] | None = Field(
        None,
        description="supernet file(s) (nat safetensors or OFA .pth), one per width multiplier; "
        "'builtin:NAME' for a supernet shipped with nat; null: fresh weights (testing only)",
    )
    space: str | dict[str, Any] | None = Field(
        None,
        description="search space preset, or a mapping of fields to change on the supernet's own space "
        "(e.g. {resolutions: [28, 32]}); default: the supernet's own (OFA: the paper's)",
    )
    data: DataConfig
    objectives: list[str] = Field(default_factory=lambda: ["top1", "madds"], min_length=2, max_length=12)
    constraints: dict[str, float] = Field(default_factory=dict, description="upper bounds, e.g. madds: 3e8")
    strategy: Literal["nat", "random", "evolution"] = Field(
        "nat",
        description="nat (the paper), or a baseline: random search, OFA-style single-objective "
        "evolution under the constraints",
    )
    initial_samples: int = Field(100, ge=3)
    iterations: int = Field(30, ge=0)
    candidates_per_iteration: int = Field(8, ge=1)
    candidate_selection: Literal["hypervolume", "reference_directions"] = Field(
        "hypervolume",
        description="how the candidates are picked from the surrogate search's result: the most "
        "predicted hypervolume gain (nat) or spread by reference directions (the paper)",
    )
    time_budget_minutes: float | None = Field(None, gt=0)
    surrogate: SurrogateConfig = Field(default_factory=SurrogateConfig)
    nsga3: NSGA3Config = Field(default_factory=NSGA3Config)
    adaptation: AdaptationConfig = Field(default_factory=AdaptationConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"objectives must be distinct, got {value}")
        if "top1" not in value:
            raise ValueError("objectives must include 'top1' (NAT searches accuracy against complexity)")
        for name in value:
            if name not in BUILTIN_OBJECTIVES and ":" not in name:
                raise ValueError(
                    f"unknown objective {name!r}: use one of {list(BUILTIN_OBJECTIVES)} or "
                    "'package.module:function' for your own"
                )
        return value

    @model_validator(mode="after")
    def _constraints(self) -> SearchConfig:
        for name, bound in self.constraints.items():
            if name not in self.objectives and name not in BUILTIN_OBJECTIVES:
                raise ValueError(f"constraint on unknown objective {name!r}")
            if name == "top1":
                raise ValueError("constrain complexity objectives only (top1 is maximised)")
            if not math.isfinite(bound) or bound <= 0:
                raise ValueError(f"constraint {name} <= {bound}: bound must be a positive number")
        if self.strategy == "evolution" and not self.constraints:
            raise ValueError("strategy 'evolution' (OFA-style) needs at least one constraint")
        return self


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_config(
    path: str | Path | None = None, preset: str | None = None, overrides: dict[str, Any] | None = None
) -> SearchConfig:
    """Preset (if any), then the YAML file (if any), then ``overrides``, merged and validated."""
    data: dict[str, Any] = {}
    if preset is not None:
        preset_path = PRESET_DIR / f"{preset}.yaml"
        if not preset_path.is_file():
            raise ConfigError(f"unknown preset {preset!r}; choose one of {list_presets()}")
        data = read_yaml_mapping(preset_path)
    if path is not None:
        data = _merge(data, read_yaml_mapping(path))
    data = _merge(data, overrides or {})
    return validate_config(data, source=str(path or preset or "config"))


def validate_config(data: dict[str, Any], source: str = "config") -> SearchConfig:
    try:
        return SearchConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {validation_message(exc)}") from None


def set_by_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """``set_by_path(d, "nsga3.pop_size", 40)``: how ``--set KEY=VALUE`` reaches any config field."""
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {key} is not a section")
    node[keys[-1]] = value
