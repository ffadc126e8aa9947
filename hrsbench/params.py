"""Plugin parameters are dataclass fields: defaults document themselves, unknown keys fail."""

from __future__ import annotations

import dataclasses
from typing import Any

from hrsbench.errors import HrsbenchError


def defaults(cls: type) -> dict[str, Any]:
    """The parameters of a plugin class and their defaults."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = None
    return out


def instantiate(cls: type, params: dict[str, Any], where: str) -> Any:
    """``cls(**params)`` with a one-line error naming the valid parameters on a bad key."""
    valid = defaults(cls)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise HrsbenchError(
            f"{where}: unknown parameter {unknown[0]!r} for {cls.name!r}; "
            f"valid: {', '.join(valid) or 'none'}"
        )
    try:
        return cls(**params)
    except (TypeError, ValueError) as e:
        raise HrsbenchError(f"{where}: bad parameters for {cls.name!r}: {e}") from None


def as_dict(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
