"""docs/configuration.md, generated from the config models themselves so that it cannot drift.

    python -m nat.search.config_reference > docs/configuration.md

A test compares the committed page with this output: a field added, renamed or re-described in the
pydantic models without regenerating the page fails the suite.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from nat.config_io import model_in
from nat.data.config import DataConfig
from nat.search.config import SearchConfig

INTRO = """# Configuration reference

A search run is a YAML file (or a mapping, or `--set KEY=VALUE` on the command line) validated into
`nat.search.SearchConfig`; unknown fields are errors that name the closest known one. A preset is a
starting point (`--preset smoke`, `--preset quickstart`), a config file changes it, `--set` changes that.
`nat search --data NAME` chooses the settings that matter from the data instead
([own_images.md](own_images.md)). The run writes the resolved config to `RUN/config.yaml`; a resumed
run keeps every field that changes results (the others are listed in [reliability.md](reliability.md)).

This page is generated from the models (`python -m nat.search.config_reference > docs/configuration.md`).
"""


def _type_name(annotation: Any) -> str:
    """A short, readable spelling of a field's type."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (list, tuple, dict):
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation) if a is not Ellipsis)
        return f"{origin.__name__}[{args}]"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "(section)"
        return f"`{value!r}`"
    if field.default is PydanticUndefined:
        return "required"
    return f"`{field.default!r}`"


def _sections(model: type[BaseModel]) -> list[tuple[str, type[BaseModel]]]:
    """The nested sections of ``model`` (fields whose type holds a model), by field name."""
    out = []
    for name, field in model.model_fields.items():
        inner = model_in(field.annotation)
        if inner is not None:
            out.append((name, inner))
    return out


def _table(model: type[BaseModel], prefix: str) -> list[str]:
    lines = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        if not description and model_in(field.annotation) is not None:
            description = f"the `{name}:` section below"
        kind = _type_name(field.annotation).replace("|", "\\|")
        default = _default(field).replace("|", "\\|")
        lines.append(f"| `{prefix}{name}` | {kind} | {default} | {description} |")
    return lines


def render() -> str:
    """The whole page."""
    parts = [INTRO, "## The run (`SearchConfig`)", "", *_table(SearchConfig, ""), ""]
    done = {SearchConfig}
    for name, section in _sections(SearchConfig):
        if section in done:
            continue
        done.add(section)
        title = "the task" if section is DataConfig else section.__name__
        doc = (section.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        parts += [f"## `{name}:` ({title})", "", doc, "", *_table(section, f"{name}."), ""]
    return "\n".join(parts).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
