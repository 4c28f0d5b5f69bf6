"""Load a YAML file into a pydantic model; errors name the file, line and field.

Every YAML file under ``config/`` is read through :func:`load_model`, so a bad
value anywhere stops start-up with ``config/x.yaml:12: clocks.0.hours: ...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A configuration file is missing, unparsable or invalid.

    ``str(err)`` is a complete message for an operator: one line per problem,
    each ``FILE:LINE: FIELD: what is wrong``.
    """

    def __init__(self, path: Path | str, problems: Sequence[tuple[int | None, str, str]]):
        self.path = str(path)
        self.problems = list(problems)
        lines = []
        for line, field, msg in self.problems:
            where = f"{self.path}:{line}" if line else self.path
            lines.append(f"{where}: {field}: {msg}" if field else f"{where}: {msg}")
        super().__init__("\n".join(lines))


# libyaml's loader when present (the gazetteer's regions and taxonomy files are
# large enough for the pure-Python one to cost most of a second per load).
_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose_lines(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    # A field's line is the line of its key (recorded by the parent), which is
    # where people look; setdefault keeps it.
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            out[path + (key_node.value,)] = key_node.start_mark.line + 1
            _compose_lines(value_node, path + (key_node.value,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _compose_lines(item, path + (i,), out)


def read_yaml(path: Path | str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """Return (data, line_of) where line_of maps a field path to its 1-based line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(p, [(None, "", "file not found")]) from None
    except UnicodeDecodeError as e:
        raise ConfigError(p, [(None, "", f"not UTF-8: {e}")]) from None
    try:
        # One parse: compose the node tree (it keeps every line), then build the data from it.
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise ConfigError(p, [(line, "", f"YAML syntax error: {e.problem}")]) from None
    except (ValueError, TypeError) as e:
        # PyYAML's constructors raise plain errors for values such as the
        # impossible date 2027-02-30; find the line by re-scanning scalars.
        raise ConfigError(p, [(_bad_scalar_line(text, str(e)), "", f"invalid value: {e}")]) from None
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _compose_lines(node, (), lines)
    return data, lines


def _bad_scalar_line(text: str, err: str) -> int | None:
    # Construct each scalar on its own; the first that fails is the culprit.
    loader = yaml.SafeLoader(text)
    try:
        while True:
            event = loader.get_event()
            if event is None or isinstance(event, yaml.StreamEndEvent):
                return None
            if isinstance(event, yaml.ScalarEvent) and event.tag is None and event.implicit[0]:
                tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
                node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark)
                try:
                    loader.construct_object(node, deep=True)
                except (ValueError, TypeError):
                    return event.start_mark.line + 1
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()


def _line_for(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    # pydantic locations can include union tags and model names that are not in
    # the YAML; walk back to the nearest ancestor that has a line.
    loc = tuple(x for x in loc if not (isinstance(x, str) and x.startswith("function-")))
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def validate(path: Path | str, data: Any, lines: dict[tuple[Any, ...], int], model: type[M],
             context: dict[str, Any] | None = None) -> M:
    """Validate ``data`` as ``model`` (``context`` goes to the validators); raise :class:`ConfigError`."""
    try:
        return model.model_validate(data if data is not None else {}, context=context)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = tuple(err["loc"])
            field = ".".join(str(x) for x in loc) or "(top level)"
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown field (check the spelling)"
            problems.append((_line_for(loc, lines), field, msg))
        raise ConfigError(path, problems) from None


def load_model(path: Path | str, model: type[M]) -> M:
    """Read ``path`` and validate it as ``model``; raise :class:`ConfigError`."""
    data, lines = read_yaml(path)
    return validate(path, data, lines, model)
