"""Plugin parameters are dataclass fields: defaults document themselves, unknown keys fail, and
values are checked against the fields' type hints before any work starts.

Values come from TOML, so they are checked as JSON values in pydantic's strict mode: ``true`` is
not an int, ``2.5`` and ``"four"`` are not ints, an int is a valid float, and a list is a valid
tuple (``channels = [10, 10]`` for a ``tuple[int, ...]`` field). A list given for a scalar field
is refused with the hint to sweep it under the entry's ``grid`` table.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from hrsbench.errors import HrsbenchError


@dataclass(frozen=True)
class Parameter:
    """One plugin parameter: its name, its type as written, and its default (none: required)."""

    name: str
    type: str
    required: bool
    default: Any = None


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: leave that class unchecked
        return {}


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def parameters(cls: type) -> list[Parameter]:
    """The parameters of a plugin class, in declaration order."""
    hints = _hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        type_ = _type_name(hints.get(f.name, f.type))
        if f.default is not dataclasses.MISSING:
            out.append(Parameter(f.name, type_, False, f.default))
        elif f.default_factory is not dataclasses.MISSING:
            out.append(Parameter(f.name, type_, False, f.default_factory()))
        else:
            out.append(Parameter(f.name, type_, True))
    return out


def defaults(cls: type) -> dict[str, Any]:
    """The parameters of a plugin class that have defaults, with their defaults."""
    return {p.name: p.default for p in parameters(cls) if not p.required}


def _accepts_sequence(hint: Any) -> bool:
    """Whether a field of this type may hold a list (a tuple, list or sequence type, or a union
    with one)."""
    origin = typing.get_origin(hint) or hint
    if origin in (list, tuple, Sequence, set, frozenset):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_accepts_sequence(a) for a in typing.get_args(hint))
    return hint is Any


@cache
def _adapter(hint: Any) -> TypeAdapter[Any] | None:
    try:
        return TypeAdapter(hint)
    except Exception:  # a type pydantic cannot check (an arbitrary class): the plugin checks it
        return None


def check_value(hint: Any, value: Any) -> Any:
    """``value`` checked against ``hint`` (see the module docstring); returns the value as the
    field holds it (a list becomes a tuple for a tuple field, an int a float for a float field).
    Raises ``ValueError`` with pydantic's reason."""
    adapter = _adapter(hint)
    if adapter is None:
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        text = None
    try:
        if text is None:
            return adapter.validate_python(value, strict=True)
        return adapter.validate_json(text, strict=True)
    except ValidationError as e:
        raise ValueError(e.errors()[0]["msg"].lower()) from None


def _name(cls: type) -> str:
    return getattr(cls, "name", cls.__name__)


def validate(cls: type, params: dict[str, Any], where: str) -> dict[str, Any]:
    """Every parameter of ``cls`` (defaults filled in), each checked against its type hint;
    one-line :class:`HrsbenchError` on an unknown key, a missing required parameter, a list where
    one value is expected (to be swept under ``grid``) or a value of the wrong type."""
    declared = parameters(cls)
    valid = [p.name for p in declared]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise HrsbenchError(
            f"{where}: unknown parameter {unknown[0]!r} for {_name(cls)!r}; "
            f"valid: {', '.join(valid) or 'none'}"
        )
    missing = [p.name for p in declared if p.required and p.name not in params]
    if missing:
        raise HrsbenchError(
            f"{where}: {_name(cls)!r} needs the parameter {missing[0]!r} (it has no default); "
            f"set it in params"
        )
    hints = _hints(cls)
    return {p.name: _checked(cls, p.name, hints.get(p.name, Any), params[p.name], where)
            if p.name in params else p.default for p in declared}


def as_toml(value: Any) -> str:
    """A config value as the user wrote it in TOML (``true``, ``"four"``, ``[1, 2]``)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _checked(cls: type, key: str, hint: Any, value: Any, where: str) -> Any:
    if isinstance(value, list) and not _accepts_sequence(hint):
        raise HrsbenchError(
            f"{where}: parameter {key!r} of {_name(cls)!r} takes one {_type_name(hint)}, got "
            f"the list {as_toml(value)}; to sweep it, move it under grid: "
            f"grid = {{ {key} = {as_toml(value)} }}"
        )
    try:
        return check_value(hint, value)
    except ValueError as e:
        raise HrsbenchError(
            f"{where}: parameter {key!r} of {_name(cls)!r} must be {_type_name(hint)}, got "
            f"{as_toml(value)} ({e})"
        ) from None


def instantiate(cls: type, params: dict[str, Any], where: str) -> Any:
    """``cls(**params)`` after :func:`validate`; a plugin's own check (``__post_init__``
    raising ``ValueError`` or ``TypeError``) is one line too."""
    values = validate(cls, params, where)
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise HrsbenchError(f"{where}: bad parameters for {_name(cls)!r}: {e}") from None


def as_dict(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
