"""The JSON files of a run folder that commands read back (``state.json``, ``models.json``), validated.

A run folder is plain files a user can open, copy and edit, so a command that reads one back checks it
as it checks a config: pydantic models, and one `CheckpointError` naming the file, the entry and the
field when something is wrong, never a ``KeyError`` deep inside a report. Fields nat does not know are
kept (a newer nat may write more); fields it reads must have the right type, strictly (a count written
as ``"3"`` is damage, not a number to guess at).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nat.config_io import check_file_data, read_json_file
from nat.errors import CheckpointError, ConfigError
from nat.space.subnet import Subnet


class HistoryEntry(BaseModel):
    """One iteration of ``state.json``'s history (the strategy's own report rides along)."""

    model_config = ConfigDict(extra="allow")
    iteration: int = Field(ge=0)
    hypervolume: float | None = None
    front_size: int | None = Field(None, ge=0)
    archive_size: int | None = Field(None, ge=0)


class RunState(BaseModel):
    """``state.json``: where the run stands and its per-iteration history."""

    model_config = ConfigDict(extra="allow")
    iteration: int | None = None
    elapsed_s: float | None = None
    history: list[HistoryEntry] = Field(default_factory=list)
    repairs: list[dict[str, Any]] = Field(default_factory=list)


class FormatEntry(BaseModel):
    """One deployed file of a model in ``models.json``'s ``formats`` (`nat.search.formats`): measured in
    its own runtime."""

    model_config = ConfigDict(extra="allow")
    file: str = Field(min_length=1)
    size_bytes: int = Field(ge=0)
    runtime: str
    precision: str
    test_top1: float | None = Field(None, ge=0, le=1)
    test_top5: float | None = Field(None, ge=0, le=1)
    test_images: int | None = Field(None, ge=0)
    latency_ms: float = Field(ge=0)
    threads: int = Field(ge=1)


class ModelEntry(BaseModel):
    """One delivered model in ``models.json``: its folder, subnet, cost and measured accuracies."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, description="the model's folder, relative to the index's folder")
    subnet: dict[str, Any]
    madds: float = Field(ge=0)
    params: float = Field(ge=0)
    top1: float | None = None
    test_top1: float | None = Field(None, ge=0, le=1)
    test_top5: float | None = Field(None, ge=0, le=1)
    test_images: int | None = Field(None, ge=0)
    finetune_epochs: float | None = Field(None, ge=0)
    settings: dict[str, Any] | None = None
    task: str | None = None
    formats: dict[str, FormatEntry] | None = None

    @field_validator("name")
    @classmethod
    def _relative(cls, value: str) -> str:
        parts = PurePosixPath(value).parts
        if value.startswith("/") or ".." in parts or "\\" in value:
            raise ValueError(f"{value!r} is not a folder name inside the models folder")
        return value

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            Subnet.from_dict(value)
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a subnet ({exc})") from None
        return value


STATE_REMEDY = "restore it from a copy, or delete it (the run then redoes its iterations on --resume)"


def read_state(path: Path) -> dict[str, Any]:
    """``state.json`` as a plain dict ({} when there is none yet), validated (`RunState`);
    `CheckpointError` naming the file, the history entry and the field when it is damaged."""
    if not path.exists():
        return {}
    data = read_json_file(path, STATE_REMEDY)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is damaged (not a JSON object); {STATE_REMEDY}")
    check_file_data(RunState, data, path, STATE_REMEDY)
    return data


def index_remedy(run: Path | None) -> str:
    where = f"nat export {run}" if run is not None else "nat export RUN_DIR"
    return f"restore it from a copy, or delete it and run `{where}` to make the models again"


def read_models_index(path: Path, run: Path | None = None) -> list[dict[str, Any]]:
    """``models.json`` as plain dicts ([] when there is none yet), every entry validated (`ModelEntry`);
    `CheckpointError` naming the file, the entry (index and name) and the field when it is damaged.
    ``run``: the run folder, for the advice on re-creating the models."""
    if not path.is_file():
        return []
    remedy = index_remedy(run)
    data = read_json_file(path, remedy)
    if not isinstance(data, list):
        raise CheckpointError(f"{path} is damaged (not a list of model entries); {remedy}")
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise CheckpointError(
                f"{path} is damaged: entry {i} is {type(entry).__name__}, not an object; {remedy}"
            )
        name = entry.get("name")
        which = f"entry {i}" + (f" ({name})" if isinstance(name, str) and name else "")
        check_file_data(ModelEntry, entry, path, remedy, where=f"{which}: ")
    return data
