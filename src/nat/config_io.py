"""Reading YAML configuration files and reporting validation errors: shared by every config model.

Both helpers exist so that every command reports a bad config the same way: one line naming the file,
the field path and what is wrong, never a pydantic or YAML traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from nat.errors import ConfigError


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


def validation_message(exc: ValidationError, docs: str = "the README") -> str:
    """``field.path: problem; ...`` for every error of a pydantic validation."""
    parts = []
    for err in exc.errors():
        # union tags (``~task``) say which form of a field was validated; they are not part of its path
        where = ".".join(str(p) for p in err["loc"] if not str(p).startswith("~")) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown field (check its spelling; see {docs} for the fields)"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)
