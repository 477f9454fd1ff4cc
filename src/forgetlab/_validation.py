"""Input validation at the library's boundary: every error names the parameter and its range."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


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
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or an array of numbers, got {value!r}") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    ok = np.ones(arr.shape, dtype=bool)
    if low is not None:
        ok &= arr > low if open_low else arr >= low
    if high is not None:
        ok &= arr < high if open_high else arr <= high
    if not np.all(ok):
        left = "(-inf" if low is None else ("(" if open_low else "[") + f"{low:g}"
        right = "inf)" if high is None else f"{high:g}" + (")" if open_high else "]")
        raise ValueError(f"{name} must lie in {left}, {right}, got {arr[~ok].ravel()[0]:g}")
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
