"""Reading YAML configuration files and reporting validation errors: shared by every config model.

Both helpers exist so that every command reports a bad config the same way: one line naming the file,
the field path and what is wrong, never a pydantic or YAML traceback.
"""

from __future__ import annotations

import difflib
import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from nat.errors import CheckpointError, ConfigError


def read_text(path: str | Path, what: str = "config file") -> str:
    """The text of ``path``; `ConfigError` saying which ``what`` is missing or unreadable."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; give the file inside it")
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text (a binary file? byte {exc.start} is "
            f"{exc.object[exc.start]:#04x})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file (empty file: ``{}``); `ConfigError` for a missing, unreadable or
    malformed file, or one whose top level is not a mapping."""
    path = Path(path)
    text = read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of fields, not {type(data).__name__}")
    return data


def validation_message(
    exc: ValidationError,
    docs: str = "the README",
    model: type[BaseModel] | None = None,
    name: Callable[[str], str | None] | None = None,
) -> str:
    """``field.path: problem; ...`` for every error of a pydantic validation. With the ``model`` that was
    validated, an unknown field is answered with the closest known one (``did you mean 'iterations'?``).
    ``name`` spells a field's dotted path as the user wrote it (a section prefix, a command-line flag;
    ``""`` for the model as a whole); ``None`` from it leaves the problem without a name."""
    parts = []
    for err in exc.errors():
        # union tags (``~task``) say which form of a field was validated; they are not part of its path
        loc = [p for p in err["loc"] if not str(p).startswith("~")]
        path = ".".join(str(p) for p in loc)
        where = name(path) if name is not None else path or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            close = _closest_field(model, loc)
            hint = f"did you mean {close!r}? " if close else "check its spelling; "
            msg = f"unknown field ({hint}see {docs} for the fields)"
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def _closest_field(model: type[BaseModel] | None, loc: list[int | str]) -> str | None:
    """The known field of the section holding ``loc``'s last key that is spelled most like it."""
    if model is None or not loc or not isinstance(loc[-1], str):
        return None
    for key in loc[:-1]:
        if isinstance(key, int):  # an entry of a list: the same model as the list's
            continue
        field = model.model_fields.get(str(key))
        model = model_in(field.annotation) if field is not None else None
        if model is None:
            return None
    names = [alias or name for name, f in model.model_fields.items() for alias in [f.alias]]
    close = difflib.get_close_matches(loc[-1], names, n=1, cutoff=0.6)
    return close[0] if close else None


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field's annotation holds (``X | None``, ``list[X]``, ``Annotated[X, ...]``),
    if any: what a nested config section is validated with."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = model_in(arg)
        if found is not None:
            return found
    return None


# ------------------------------------------------------------------- JSON files a run or model folder holds


def read_json_file(path: Path, remedy: str = "") -> Any:
    """The JSON a run or model folder's file holds; one `CheckpointError` naming the file (and saying
    ``remedy``) when it cannot be read or is not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is damaged (not readable JSON: {exc}){_then(remedy)}") from None


def check_file_data(model: type[BaseModel], data: Any, path: Path, remedy: str = "", where: str = "") -> None:
    """Validate what a file read back holds against ``model``, strictly (a count written as ``"3"`` is
    damage, not a number to guess at); one `CheckpointError` naming the file, ``where`` in it (e.g. an
    entry) and every bad field."""
    try:
        model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise CheckpointError(f"{path} is damaged: {where}{validation_message(exc)}{_then(remedy)}") from None


def _then(remedy: str) -> str:
    return f"; {remedy}" if remedy else ""
