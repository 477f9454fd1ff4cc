"""Input validation at the library's boundary: every error names the parameter and its range.

Arrays are checked by :func:`as_finite`, :func:`as_means` and :func:`as_covariance`; tables
(configurations, sweep specs) by pydantic models through :func:`validated`, whose errors
:func:`one_line` turns into one line naming the field and its allowed range.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

import annotated_types as at
import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, BeforeValidator, ValidationError
from pydantic.fields import FieldInfo

Array = NDArray[np.float64]
Model = TypeVar("Model", bound=BaseModel)


def _not_bool(value: Any) -> Any:
    """Reject booleans where a number is expected (pydantic would read ``true`` as 1)."""
    if isinstance(value, bool):
        raise ValueError(f"Input should be a number, not the boolean {str(value).lower()}")
    return value


#: An integer or float field that refuses ``true``/``false``.
Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]


def interval(low: float | None, high: float | None, open_low: bool = False,
             open_high: bool = False) -> str:
    """An interval as text: ``[0, 1)``, ``(-inf, 5]``, ``[1, 1000000]``."""
    left = "(-inf" if low is None else ("(" if open_low else "[") + _number(low)
    right = "inf)" if high is None else _number(high) + (")" if open_high else "]")
    return f"{left}, {right}"


def _number(value: float) -> str:
    """A bound as text: integers in full (1000000), others in the shortest form (1e-06)."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def as_count(value: object, name: str, low: int = 1) -> int:
    """``value`` as an int, checked to be an integer (not a bool) >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def as_finite(
    value: ArrayLike,
    name: str,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
    open_high: bool = False,
) -> Array:
    """``value`` as a float64 array, checked finite and inside [low, high] (ends open on
    request)."""
    if isinstance(value, int | float):  # a plain number: the same checks without numpy's
        x = float(value)
        if not math.isfinite(x):
            raise ValueError(f"{name} must be finite (no NaN or inf)")
        if ((low is not None and not (x > low if open_low else x >= low))
                or (high is not None and not (x < high if open_high else x <= high))):
            raise ValueError(f"{name} must lie in {interval(low, high, open_low, open_high)}, "
                             f"got {x:g}")
        return np.asarray(x)
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or an array of numbers, got {value!r}") from None
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    outside = np.zeros(arr.shape, dtype=bool) if low is None else (
        arr <= low if open_low else arr < low)
    if high is not None:
        outside |= arr >= high if open_high else arr > high
    if outside.any():
        raise ValueError(f"{name} must lie in {interval(low, high, open_low, open_high)}, "
                         f"got {arr[outside].ravel()[0]:g}")
    return arr


def as_means(*means: ArrayLike, names: tuple[str, ...]) -> tuple[Array, ...]:
    """Means as float64 arrays ``[..., d]`` (a scalar means d = 1) with one common dimension d."""
    out = []
    for value, name in zip(means, names, strict=True):
        arr = as_finite(value, name)
        out.append(arr[..., None] if arr.ndim == 0 else arr)
    dims = {a.shape[-1] for a in out}
    if len(dims) != 1:
        listed = ", ".join(f"{n}: d={a.shape[-1]}" for n, a in zip(names, out, strict=True))
        raise ValueError(f"mismatched dimensions: {listed}; all means must share d")
    return tuple(out)


def as_covariance(cov: ArrayLike, dim: int, name: str = "cov") -> Array:
    """A symmetric positive definite covariance ``[..., d, d]`` from a scalar variance, a
    diagonal or a matrix."""
    arr = as_finite(cov, name)
    if arr.ndim == 0:
        if arr <= 0:
            raise ValueError(f"{name} (a variance) must be > 0, got {float(arr):g}")
        return float(arr) * np.eye(dim)
    if arr.ndim == 1:
        if arr.shape[0] != dim:
            raise ValueError(f"{name} diagonal has length {arr.shape[0]}, expected d={dim}")
        if np.any(arr <= 0):
            raise ValueError(f"{name} diagonal entries must be > 0")
        return np.diag(arr)
    if arr.shape[-2:] != (dim, dim):
        raise ValueError(f"{name} has shape {arr.shape}, expected (..., {dim}, {dim})")
    scale = np.max(np.abs(arr))
    if not np.allclose(arr, np.swapaxes(arr, -1, -2), rtol=1e-10, atol=1e-12 * scale):
        raise ValueError(f"{name} must be symmetric")
    eig_min = np.linalg.eigvalsh(arr)[..., 0]
    if np.any(eig_min <= 1e-14 * scale):
        raise ValueError(
            f"{name} must be positive definite (smallest eigenvalue {eig_min.min():g})")
    return 0.5 * (arr + np.swapaxes(arr, -1, -2))


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``Model``, ``Model | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        found = [m for a in typing.get_args(annotation) if (m := _submodel(a))]
        return found[0] if len(found) == 1 else None
    return None


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """``(base type, constraints)`` of an ``Annotated`` type (nested ones flattened)."""
    metadata: list[Any] = []
    while typing.get_origin(annotation) is Annotated:
        annotation, *extra = typing.get_args(annotation)
        metadata += [m for e in extra for m in (e.metadata if isinstance(e, FieldInfo) else [e])]
    return annotation, metadata


def _describe(annotation: Any, metadata: list[Any]) -> str | None:
    """The allowed values of a field from its type and bounds: 'an integer in [1, 1000]'.

    ``X | None`` is described by ``X`` (with the bounds ``X`` carries); ``int | float`` is a
    number; other types give None."""
    members = [annotation]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
    bases = []
    for member in members:
        base, extra = _unwrap(member)
        bases.append(base)
        metadata = [*metadata, *extra]
    if len(bases) == 1 and typing.get_origin(bases[0]) is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(bases[0]))
    if bases == [bool]:
        return "true or false"
    if not bases or not set(bases) <= {int, float}:
        return None
    kind = "an integer" if set(bases) == {int} else "a number"
    low: Any = None
    high: Any = None
    open_low = open_high = False
    for m in metadata:
        if isinstance(m, at.Ge):
            low = m.ge
        elif isinstance(m, at.Gt):
            low, open_low = m.gt, True
        elif isinstance(m, at.Le):
            high = m.le
        elif isinstance(m, at.Lt):
            high, open_high = m.lt, True
    if low is None and high is None:
        return kind
    if high is None:
        return f"{kind} {'>' if open_low else '>='} {_number(low)}"
    if low is None:
        return f"{kind} {'<' if open_high else '<='} {_number(high)}"
    return f"{kind} in {interval(low, high, open_low, open_high)}"


def _field_path(model: type[BaseModel] | None, loc: tuple[Any, ...]
                ) -> tuple[list[str], type[BaseModel] | None, FieldInfo | None]:
    """The leading part of an error location that names fields, followed through nested models
    and list items of models (``stages.0.steps``); it stops at a union member's tag or an index
    into plain values. Returns that path, the model it reaches and the last field's info."""
    path: list[str] = []
    info: FieldInfo | None = None
    current = model
    for part in loc:
        items = info is not None and typing.get_origin(info.annotation) is list
        if isinstance(part, int) and items and info is not None:
            current = _submodel(typing.get_args(info.annotation)[0])
            if current is None:
                break
            path.append(str(part))
            info = None
            continue
        if current is None or not isinstance(part, str) or part not in current.model_fields:
            break
        info = current.model_fields[part]
        path.append(part)
        current = _submodel(info.annotation)
    return path, current, info


def one_line(err: ValidationError, model: type[BaseModel] | None = None, noun: str = "config",
             prefix: str = "", allowed: Mapping[str, str] | None = None) -> str:
    """The first error of a pydantic validation as one line naming the field and its range.

    An unknown key gives "unknown <noun> key 'k' (allowed keys: ...)"; a field "<noun> field
    'a.b': <problem> (allowed: <range>)", the range from ``allowed[field]`` or else from the
    field's type and bounds in ``model``; a check across fields "<noun>: <problem>" (with the
    range of the field it starts with, if ``allowed`` has it). Field names are the dotted path
    of fields in the error's location (after ``prefix``, the table that was validated, e.g.
    ``axes.lr``), without list indices of plain values or union members.
    """
    first = err.errors()[0]
    loc = tuple(first["loc"])
    msg = str(first["msg"]).removeprefix("Value error, ")
    known = allowed or {}
    if first["type"] == "extra_forbidden":
        path, parent, _ = _field_path(model, loc[:-1])
        field = ".".join(p for p in (prefix, *path, str(loc[-1])) if p)
        keys = f" (allowed keys: {', '.join(parent.model_fields)})" if parent else ""
        return f"unknown {noun} key {field!r}{keys}"
    path, _, info = _field_path(model, loc)
    field = ".".join(p for p in (prefix, *path) if p)
    if not field:
        head = msg.replace("(", " ").split()[0] if msg else ""
        return f"{noun}: {msg}" + (f" (allowed: {known[head]})" if head in known else "")
    scope = known.get(field) or (info and _describe(info.annotation, info.metadata))
    return f"{noun} field {field!r}: {msg}" + (f" (allowed: {scope})" if scope else "")


def validated(model: type[Model], data: Any, noun: str = "config", prefix: str = "",
              allowed: Mapping[str, str] | None = None) -> Model:
    """``model`` validated from ``data``; a failure is one ``ValueError`` line (see
    :func:`one_line`)."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ValueError(one_line(err, model, noun, prefix, allowed)) from None
