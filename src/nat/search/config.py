"""`SearchConfig`: everything a NAT run needs, validated from YAML (every CLI flag maps to a field)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from nat.config_io import model_in, read_yaml_mapping, validation_message
from nat.data.config import DataConfig
from nat.errors import ConfigError
from nat.runtime.settings import RuntimeSettings, device_name

BUILTIN_OBJECTIVES = ("top1", "madds", "params", "latency")
#: in a many-task run the objective ``top1`` stands for one objective per task: ``top1:<task>``
ACCURACY_PREFIX = "top1:"
#: objectives ``latency:<name>`` are predicted from the table ``latency.tables[<name>]``
TABLE_PREFIX = "latency:"
PRESET_DIR = Path(__file__).parent / "presets"


class SurrogateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: list[str] = Field(
        default_factory=lambda: ["rbf", "gp", "cart", "mlp", "ensemble"],
        min_length=1,
        description="candidates for adaptive switching (a single name fixes the model); 'ensemble' is "
        "the mean of the other candidates",
    )
    folds: int = Field(5, ge=2, description="cross-validation folds that score each surrogate model")
    repeats: int = Field(
        1, ge=1, description="repeated k-fold rounds (1: NAT's exact rule; more: steadier choice)"
    )

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        from nat.surrogates import available_surrogates

        known = [m for m in available_surrogates() if m not in ("adaptive", "prior")]
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
    pop_size: int = Field(100, ge=4, description="NSGA-III population on the surrogates")
    generations: int = Field(50, ge=1, description="NSGA-III generations per iteration")
    crossover_prob: float = Field(0.9, ge=0, le=1, description="two-point crossover probability")
    mutation_eta: float = Field(1.0, gt=0, description="polynomial mutation distribution index")
    n_partitions: int | None = Field(None, ge=1, description="Das-Dennis partitions; default from pop size")


class AdaptationConfig(BaseModel):
    """Online supernet adaptation (NAT section 3.4): epochs per iteration and the optimiser."""

    model_config = ConfigDict(extra="forbid")
    initial_epochs: float = Field(1.0, ge=0, description="epochs before the first evaluation")
    epochs: float = Field(1.0, ge=0, description="epochs per iteration")
    lr: float = Field(0.01, gt=0, description="SGD learning rate (cosine schedule over each adaptation)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (Nesterov)")
    weight_decay: float = Field(4e-5, ge=0, description="SGD weight decay")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="label smoothing of the training loss")
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
    distill: bool = Field(
        False,
        description="each step also trains the largest subnet (at the step's resolution) on the labels, "
        "and the sampled subnet learns from its soft predictions (in-place distillation, as nat "
        "pretrain's phases); false: the paper (docs/search.md)",
    )
    distill_every: int = Field(
        1,
        ge=1,
        description="with distill: the largest subnet trains and teaches on every n-th step only (the "
        "others use the labels alone): less of distillation's cost, and of its effect (README)",
    )
    max_steps: int | None = Field(None, ge=1, description="cap on steps per adaptation (for quick runs)")

    @model_validator(mode="after")
    def _distill_every_needs_distill(self) -> AdaptationConfig:
        if self.distill_every > 1 and not self.distill:
            raise ValueError("distill_every applies to distillation: set distill: true as well")
        return self


class EvaluationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    calibration_images: int = Field(500, ge=1, description="training images used for BN recalibration")
    max_val_images: int | None = Field(None, ge=1, description="cap on search-validation images")
    reevaluate: Literal["all", "front", "predicted", "none"] = Field(
        "all",
        description="archive members re-measured after each adaptation (the paper: all). predicted: the "
        "front and reevaluate_sample others in full, the rest shifted by the median change those showed, "
        "and any predicted member that reaches the front measured (docs/search.md)",
    )
    reevaluate_sample: int = Field(
        8,
        ge=1,
        description="reevaluate: predicted: archive members beyond the front re-measured in full after "
        "each adaptation (drawn with the run seed), from which the others' change is estimated",
    )
    calibration_cache_mb: float = Field(
        1024,
        gt=0,
        description="bound on the BN-calibration images kept resized on the device, over all resolutions "
        "(least recently used resolution evicted first; speed only, never results)",
    )
    validation_cache_mb: float = Field(
        2048,
        ge=0,
        description="bound on the search-validation batches kept on the device, over all resolutions "
        "(a file-based split's as decoded uint8; least recently used resolution evicted first, one "
        "larger than the bound read again per subnet, 0: none kept; speed only, never results)",
    )


class LatencyConfig(BaseModel):
    """Latency objectives: measured on each evaluated subnet (``latency`` without a table), or predicted
    exactly from latency lookup tables (``latency`` with ``table``, ``latency:<name>`` with ``tables``)."""

    model_config = ConfigDict(extra="forbid")
    batch_size: int = Field(1, ge=1, description="measured latency: images per forward pass")
    warmup: int = Field(3, ge=0, description="measured latency: untimed passes first")
    repeats: int = Field(10, ge=1, description="measured latency: timed passes (their median is recorded)")
    device: str | None = Field(
        None, description="where latency is measured: auto, cpu, cuda, cuda:N (default: the run's device)"
    )
    table: str | list[str] | None = Field(
        None,
        description="latency table file(s) for the 'latency' objective (`nat latency build`, or OFA's "
        "per-resolution YAML files): latency is then predicted from the table, not measured",
    )
    tables: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="named latency tables, one per objective 'latency:<name>' (e.g. one per device or "
        "batch size, for several latency objectives at once)",
    )

    @field_validator("tables")
    @classmethod
    def _names(cls, value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        bad = [n for n in value if not n or not n.replace("_", "").replace("-", "").isalnum()]
        if bad:
            raise ValueError(f"latency table names must be letters, digits, '_' or '-', got {bad}")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str | None) -> str | None:
        return None if value is None else device_name(value)


class FinalizeConfig(BaseModel):
    """What a search delivers after its last iteration: front members as standalone, tested models."""

    model_config = ConfigDict(extra="forbid")
    models: int = Field(
        5, ge=0, le=1000, description="front members to extract, spread along the front (0: none)"
    )
    finetune_epochs: float = Field(
        0.0, ge=0, description="fine-tuning epochs per model (0: weights as adapted)"
    )
    lr: float = Field(0.01, gt=0, description="fine-tuning learning rate (cosine schedule)")
    distill: bool | None = Field(
        None,
        description="fine-tune with knowledge distillation from the adapted supernet's largest subnet, "
        "OFA-style (None: on whenever fine-tuning)",
    )
    kd_ratio: float = Field(1.0, ge=0, description="weight of the distillation loss")
    onnx: bool = Field(False, description="also write model.onnx (ONNX Runtime) for every model")
    executorch: bool = Field(
        False,
        description="also write model.pte for every model: ExecuTorch (PyTorch's on-device runtime), "
        "XNNPACK delegate, batch 1; needs the deploy extra (pip install 'nat[deploy]')",
    )
    int8: bool = Field(
        False,
        description="also write the int8 file of each runtime asked for (model.int8.onnx, "
        "model.int8.pte): post-training static quantization calibrated on training images",
    )
    calibration_images: int = Field(
        256, ge=1, description="training-split images that calibrate the int8 quantization"
    )
    latency_threads: int = Field(
        1, ge=1, description="CPU threads for each deployed file's batch-1 latency measurement"
    )
    test: bool = Field(True, description="measure test top-1/top-5 (the split the search never saw)")
    compile: bool | str = Field(
        False,
        description="torch.compile each extracted model for its fine-tuning and test pass, and fine-tune "
        "the extracted network instead of the subnet inside its supernet: true (torch's default backend, "
        "inductor) or a backend name. Compiling costs tens of seconds per model and was slower than eager "
        "on CPU (docs/scale.md); for long fine-tunes on a GPU",
    )

    @property
    def distills(self) -> bool:
        return self.finetune_epochs > 0 and (self.distill is None or self.distill)

    @property
    def deploys(self) -> bool:
        """Whether any runtime file is asked for (then every format is measured in its runtime)."""
        return self.onnx or self.executorch

    @model_validator(mode="after")
    def _int8_needs_runtime(self) -> FinalizeConfig:
        if self.int8 and not self.deploys:
            raise ValueError(
                "int8 quantizes the ONNX and/or ExecuTorch files: ask for onnx and/or executorch as well"
            )
        return self

    @field_validator("compile")
    @classmethod
    def _compile(cls, value: bool | str) -> bool | str:
        if isinstance(value, str):
            from nat.train.standalone import compile_backends, unknown_backend

            if value not in compile_backends():
                raise ValueError(unknown_backend(value))
        return value


def finalize_settings(
    base: FinalizeConfig,
    changes: dict[str, Any],
    name: Callable[[str], str | None] = lambda path: f"finalize.{path}" if path else "finalize",
) -> FinalizeConfig:
    """``base`` with the ``changes`` that are not None, validated as a config's ``finalize`` section is;
    a refusal is one `ConfigError` naming each field as ``name`` spells it (`nat export`: its flags)."""
    updated = {**base.model_dump(), **{k: v for k, v in changes.items() if v is not None}}
    try:
        return FinalizeConfig.model_validate(updated)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, model=FinalizeConfig, name=name)) from None


class RetargetSource(BaseModel):
    """The finished run a retarget run starts from (`nat retarget`, docs/transfer_search.md): its
    measured records and adapted supernets are carried over; the hashes say which state of it."""

    model_config = ConfigDict(extra="forbid")
    run: str = Field(description="the source run folder (read, never written)")
    config_sha256: str = Field(description="SHA-256 of the source's config.yaml when the retarget started")
    archive_sha256: str = Field(description="SHA-256 of the source's archive.jsonl when the retarget started")


class WarmStartConfig(BaseModel):
    """Earlier runs a new search starts from (docs/transfer_search.md#warm-start): their measured subnets
    as part of the initial archive, their accuracies as a surrogate prior, an adapted supernet."""

    model_config = ConfigDict(extra="forbid")
    runs: list[str] = Field(min_length=1, description="finished search run folders (same space and widths)")
    archive: int | None = Field(
        None,
        ge=0,
        description="initial subnets taken from the runs' fronts and archives (spread over MAdds) instead "
        "of as many random samples; measured on the new task (null: half of the initial archive besides "
        "its smallest and largest subnet)",
    )
    surrogate: bool = Field(
        False,
        description="offer adaptive switching a model that predicts the new top-1 from the runs' "
        "measured accuracies (a linear map of their prediction plus a residual model); off by default: "
        "it saved no evaluations in bench/warm_start.py",
    )
    supernet: str | None = Field(
        "auto",
        description="a run folder (single-task) whose adapted supernet replaces the pretrained one; "
        "auto: the first run's, if it is a single-task run (else the pretrained); null: the pretrained",
    )

    def supernet_run(self, first_is_many_task: bool) -> str | None:
        """The run whose adapted supernet this run starts from (None: the pretrained one)."""
        if self.supernet == "auto":
            return None if first_is_many_task else self.runs[0]
        return self.supernet

    def picks(self, initial_samples: int) -> int:
        """How many initial subnets come from the earlier runs."""
        return (initial_samples - 2) // 2 if self.archive is None else self.archive


def _validated_task_names(data: Any) -> list[str] | None:
    """The task names of an already validated ``data`` field (None when it failed validation)."""
    if isinstance(data, DataConfig):
        return task_names([data])
    if isinstance(data, list) and all(isinstance(d, DataConfig) for d in data):
        return task_names(data)
    return None


def _data_kind(value: Any) -> str:
    return "~tasks" if isinstance(value, list | tuple) else "~task"


#: ``data:`` is one data config or a list of them; the discriminator validates only the form given, so
#: an error names the field that is wrong (tags starting with ``~`` are left out of error paths)
DataSection = Annotated[
    Annotated[DataConfig, Tag("~task")] | Annotated[list[DataConfig], Tag("~tasks")],
    Discriminator(_data_kind),
]


class SearchConfig(RuntimeSettings):
    """A NAT run. See README 'Configuration' for every field (the runtime ones: `RuntimeSettings`)."""

    model_config = ConfigDict(extra="forbid")

    supernet: str | list[str] | None = Field(
        None,
        description="supernet file(s) (nat safetensors or OFA .pth), one per width multiplier; "
        "'builtin:NAME' for a supernet shipped with nat; 'random': fresh weights (tests, experiments); "
        "absent: chosen when the run starts (OFA's downloaded supernets, else the built-in one where it "
        "fits the images) and recorded in config.yaml",
    )
    space: str | dict[str, Any] | None = Field(
        None,
        description="search space preset, or a mapping of fields to change on the supernet's own space "
        "(e.g. {resolutions: [28, 32]}); default: the supernet's own (OFA: the paper's)",
    )
    data: DataSection = Field(
        description="the task: one data config, or a list of them for a many-task run (one supernet "
        "copy, adaptation and top-1 objective per task; docs/many_task.md)"
    )
    objectives: list[str] = Field(
        default_factory=lambda: ["top1", "madds"],
        min_length=2,
        max_length=12,
        description="2-12 objectives, all minimised (top-1 as error): top1, madds, params, latency, "
        "latency:<name> (a named latency table), or 'package.module:function' (function(subnet) -> float)",
    )
    constraints: dict[str, float] = Field(
        default_factory=dict,
        description="upper bounds, e.g. madds: 3e8; on madds or params (objectives or not), or on a listed "
        "objective (latency, a user function); enforced on every candidate, the front and the baselines",
    )
    strategy: str = Field(
        "nat",
        description="nat (the paper), or a baseline: random search, OFA-style single-objective "
        "evolution under the constraints",
    )
    initial_samples: int = Field(
        100, ge=3, description="the initial archive: the smallest and the largest subnet, the rest sampled"
    )
    iterations: int = Field(30, ge=0, description="NAT iterations after the initial archive")
    candidates_per_iteration: int = Field(
        8, ge=1, description="subnets evaluated (and added to the archive) per iteration"
    )
    candidate_selection: Literal["hypervolume", "reference_directions", "task_hypervolume"] = Field(
        "hypervolume",
        description="how the candidates are picked from the surrogate search's result: the most "
        "predicted hypervolume gain (nat), spread by reference directions (the paper), or, for a "
        "many-task run, the most hypervolume gain on each task's own objectives, the tasks taking turns",
    )
    time_budget_minutes: float | None = Field(
        None, gt=0, description="no iteration starts after this many minutes of the run (all sessions)"
    )
    max_evaluations: int | None = Field(
        None,
        ge=1,
        description="no iteration starts once the archive holds this many evaluations (re-evaluations "
        "included, predicted values not): a fixed cost for comparing strategies or settings",
    )
    surrogate: SurrogateConfig = Field(default_factory=SurrogateConfig)
    nsga3: NSGA3Config = Field(default_factory=NSGA3Config)
    adaptation: AdaptationConfig = Field(default_factory=AdaptationConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    finalize: FinalizeConfig = Field(default_factory=FinalizeConfig)
    warm_start: WarmStartConfig | None = Field(
        None, description="start from earlier runs on other tasks (docs/transfer_search.md#warm-start)"
    )
    retarget: RetargetSource | None = Field(
        None,
        description="set by `nat retarget`: iteration 0 carries over this finished run's measured "
        "records (objectives recomputed) and starts from its adapted supernets, instead of sampling, "
        "adapting and measuring an initial archive",
    )

    @field_validator("data", mode="before")
    @classmethod
    def _one_task_list(cls, value: Any) -> Any:
        """A list of one data config is that config: a single-task run, exactly as without the list."""
        if isinstance(value, list | tuple) and len(value) == 1:
            return value[0]
        if isinstance(value, list | tuple) and not value:
            raise ValueError("the list of tasks is empty; give one data config or several")
        return value

    @field_validator("data")
    @classmethod
    def _task_names(cls, value: DataConfig | list[DataConfig]) -> DataConfig | list[DataConfig]:
        if isinstance(value, list):
            explicit = [d.name for d in value if d.name is not None]
            repeated = sorted({n for n in explicit if explicit.count(n) > 1})
            if repeated:
                raise ValueError(f"task names must be distinct, got {repeated} more than once")
        return value

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"objectives must be distinct, got {value}")
        tasks = _validated_task_names(info.data.get("data"))
        for name in value:
            if name.startswith(ACCURACY_PREFIX):
                task = name.removeprefix(ACCURACY_PREFIX)
                if tasks is not None and task not in tasks:
                    raise ValueError(
                        f"objective {name!r} names no task of this run (tasks: {', '.join(tasks)}); write "
                        "'top1': a many-task run (data: a list) expands it into top1:<task> for each task"
                    )
                raise ValueError(
                    f"objective {name!r}: write 'top1'; a many-task run (data: a list) expands it into "
                    "one top1:<task> objective per task"
                )
            if name not in BUILTIN_OBJECTIVES and ":" not in name:
                raise ValueError(
                    f"unknown objective {name!r}: use one of {list(BUILTIN_OBJECTIVES)}, "
                    "'latency:<name>' for a named latency table, or 'package.module:function' for your own"
                )
        if "top1" not in value:
            raise ValueError("objectives must include 'top1' (NAT searches accuracy against complexity)")
        return value

    @field_validator("constraints")
    @classmethod
    def _constraints(cls, value: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        objectives = info.data.get("objectives")  # absent when invalid (then reported on its own)
        for name, bound in value.items():
            _check_constraint(name, bound, objectives)
        return value

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        from nat.search.strategies import STRATEGIES

        try:
            return STRATEGIES.key(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _warm_start(self) -> SearchConfig:
        warm = self.warm_start
        if warm is not None and warm.picks(self.initial_samples) > self.initial_samples - 2:
            raise ValueError(
                f"warm_start.archive {warm.archive}: the initial archive holds the smallest and the largest "
                f"subnet and {self.initial_samples - 2} others (initial_samples {self.initial_samples}); "
                f"take at most {self.initial_samples - 2} from the earlier runs"
            )
        if warm is not None and self.retarget is not None:
            raise ValueError("warm_start and retarget do not mix: a retarget starts from its source alone")
        return self

    @model_validator(mode="after")
    def _strategy(self) -> SearchConfig:
        if self.strategy == "evolution" and not self.constraints:
            raise ValueError("strategy 'evolution' (OFA-style) needs at least one constraint")
        if self.strategy == "evolution" and self.many_task:
            raise ValueError(
                "strategy 'evolution' (OFA-style) maximises one accuracy; a many-task run (data: a list) "
                "needs a multi-objective strategy: nat or random"
            )
        return self

    # ----------------------------------------------------------------- tasks
    @property
    def tasks(self) -> list[DataConfig]:
        """The data config of each task (one for a single-task run)."""
        return list(self.data) if isinstance(self.data, list) else [self.data]

    @property
    def many_task(self) -> bool:
        """Whether the run spans several tasks (``data`` is a list of two or more)."""
        return len(self.tasks) > 1

    @property
    def task_names(self) -> list[str]:
        """Each task's name: its ``name``, else its dataset's, made unique by a ``-2``, ``-3`` ... suffix."""
        return task_names(self.tasks)

    @property
    def objective_names(self) -> list[str]:
        """The objectives as the run records them: ``objectives`` with ``top1`` expanded, in a many-task
        run, into ``top1:<task>`` for each task (in the order of ``data``)."""
        if not self.many_task:
            return list(self.objectives)
        out: list[str] = []
        for name in self.objectives:
            out += [ACCURACY_PREFIX + t for t in self.task_names] if name == "top1" else [name]
        return out

    def accuracy_objective(self, task: str) -> str:
        """The objective that holds ``task``'s search-validation top-1 (``top1`` in a single-task run)."""
        return ACCURACY_PREFIX + task if self.many_task else "top1"

    def for_task(self, task: str) -> SearchConfig:
        """This config with ``data`` = the one task's: what adaptation, evaluation and fine-tuning of that
        task read (they see a single-task run)."""
        names = self.task_names
        if task not in names:
            raise KeyError(f"no task {task!r} in this run (tasks: {names})")
        if not self.many_task:
            return self
        return self.model_copy(update={"data": self.tasks[names.index(task)]})

    @model_validator(mode="after")
    def _latency_tables(self) -> SearchConfig:
        named = [n.removeprefix(TABLE_PREFIX) for n in self.objectives if n.startswith(TABLE_PREFIX)]
        missing = [n for n in named if n not in self.latency.tables]
        if missing:
            raise ValueError(
                f"objective(s) {[TABLE_PREFIX + n for n in missing]} need a table each: set latency.tables, "
                f"e.g. latency: {{tables: {{{missing[0]}: TABLE.yaml}}}} (made by `nat latency build`)"
            )
        unused = [n for n in self.latency.tables if n not in named]
        if unused:
            raise ValueError(
                f"latency.tables names {unused}, but no objective uses them: add "
                f"{[TABLE_PREFIX + n for n in unused]} to objectives or drop the tables"
            )
        if self.latency.table is not None and "latency" not in self.objectives:
            raise ValueError(
                "latency.table is set but 'latency' is not an objective: add it, or drop the table"
            )
        return self

    def latency_tables(self) -> dict[str, str | list[str]]:
        """Objective name -> table file(s): ``latency`` (with ``latency.table``) and ``latency:<name>``."""
        out: dict[str, str | list[str]] = {TABLE_PREFIX + n: t for n, t in self.latency.tables.items()}
        if self.latency.table is not None:
            out = {"latency": self.latency.table, **out}
        return out


def task_names(tasks: list[DataConfig]) -> list[str]:
    """Names of the tasks: each one's ``name``, else its dataset's, with ``-2``, ``-3`` ... added to
    repeated ones (in order), never clashing with an explicit name."""
    taken = {d.name for d in tasks if d.name is not None}
    out: list[str] = []
    for d in tasks:
        if d.name is not None:
            out.append(d.name)
            continue
        name, n = d.dataset, 1
        while name in taken:
            n += 1
            name = f"{d.dataset}-{n}"
        taken.add(name)
        out.append(name)
    return out


def _check_constraint(name: str, bound: float, objectives: list[str] | None) -> None:
    """A bound the run can measure: madds/params always, latency and user functions only as objectives
    (``objectives`` None: they are invalid, so only the bound itself is checked)."""
    if not math.isfinite(bound) or bound <= 0:
        raise ValueError(f"constraint {name} <= {bound}: bound must be a positive number")
    if name == "top1" or name.startswith(ACCURACY_PREFIX):
        raise ValueError("constrain complexity objectives only (top1 is maximised)")
    if objectives is None:
        return
    if name == "latency" and name not in objectives:
        raise ValueError(
            "constraint on latency: latency is measured only when it is an objective; add 'latency' to "
            "objectives (or bound madds/params instead)"
        )
    if name.startswith(TABLE_PREFIX) and name not in objectives:
        raise ValueError(
            f"constraint on {name!r}: a table latency can be bounded only when it is one of the objectives "
            f"{objectives}; add it to objectives"
        )
    if ":" in name and name not in objectives:
        raise ValueError(
            f"constraint on {name!r}: a user function can be bounded only when it is one of the objectives "
            f"{objectives}; add it to objectives"
        )
    if name not in objectives and name not in BUILTIN_OBJECTIVES:
        raise ValueError(
            f"constraint on unknown objective {name!r}: bound madds, params, latency or one of the "
            f"objectives {objectives}"
        )


def _merge(base: dict, override: dict) -> dict:
    """``override`` on ``base``, section by section. A section given as a mapping cannot change one
    given as a list (a many-task ``data``): that is an error, not a silent replacement of every task."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        elif isinstance(value, dict) and isinstance(out.get(key), list):
            raise ConfigError(
                f"{key} is a list (one entry per task) in the config, so {key}.{next(iter(value), '')} "
                f"cannot be set on it; edit the config file, or give the whole list ({key}=[...])"
            )
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
    return _validated(data, str(path or preset or "config"), overrides)


def load_saved_config(path: str | Path, overrides: dict[str, Any] | None = None) -> SearchConfig:
    """The config.yaml of a run folder (with ``overrides``). A run always records the supernet it started
    from; one saved before that was so (no ``supernet:``, or null) started from fresh weights, which is
    what ``random`` now says."""
    data = read_yaml_mapping(path)
    if data.get("supernet") is None:
        data["supernet"] = "random"
    return _validated(data, str(path), overrides)


def _validated(data: dict[str, Any], source: str, overrides: dict[str, Any] | None) -> SearchConfig:
    """``data`` with ``overrides`` merged, validated; an error blames the overrides when ``data`` alone
    is fine."""
    if not overrides:
        return validate_config(data, source=source)
    merged = _merge(data, overrides)  # a mapping set on a list of tasks is its own error, raised here
    try:
        return validate_config(merged, source=source)
    except ConfigError:
        # blame the overrides (--set, --seed, a library caller's dict) when the config alone is fine
        if data and _validates(data):
            raise ConfigError(str(_override_error(data, overrides))) from None
        raise


def _validates(data: dict[str, Any]) -> bool:
    try:
        SearchConfig.model_validate(data)
    except ValidationError:
        return False
    return True


def _override_error(data: dict[str, Any], overrides: dict[str, Any]) -> str:
    try:
        SearchConfig.model_validate(_merge(data, overrides))
    except ValidationError as exc:
        return f"--set: {validation_message(exc, model=SearchConfig)}"
    return "--set: invalid override"


def validate_config(data: dict[str, Any], source: str = "config") -> SearchConfig:
    try:
        return SearchConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {validation_message(exc, model=SearchConfig)}") from None


def set_by_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """``set_by_path(d, "nsga3.pop_size", 40)``: how ``--set KEY=VALUE`` reaches any config field. A key
    that goes below a plain value of `SearchConfig` (``nsga3.pop_size.x``) is a `ConfigError`."""
    keys = dotted.split(".")
    node = data
    model: type[BaseModel] | None = SearchConfig
    for depth, key in enumerate(keys[:-1]):
        model = _section_model(model, key, ".".join(keys[: depth + 1]), dotted)
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {key} is not a section")
    node[keys[-1]] = value


def _section_model(model: type[BaseModel] | None, key: str, path: str, dotted: str) -> type[BaseModel] | None:
    """The model of section ``key`` of ``model`` (``None``: a free mapping, or a field validation will
    report as unknown); a `ConfigError` when the field holds a plain value."""
    if model is None or key not in model.model_fields:
        return None
    annotation = model.model_fields[key].annotation
    section = model_in(annotation)
    if section is not None:  # a model, or one model or a list of them (data): the single form's fields
        return section
    if (
        annotation is dict
        or get_origin(annotation) is dict
        or any(a is dict or get_origin(a) is dict for a in get_args(annotation))
    ):
        return None
    raise ConfigError(
        f"--set: {path} is a value, not a section; set it with --set {path}=VALUE (not {dotted})"
    )
