"""Aggregation rules and update protection, in plain numpy (the Flower strategies call these).

- :func:`fedavg`: the mean of the sites' arrays weighted by their example counts (McMahan et al. 2017).
- :func:`fedmedian`: the coordinate-wise median, unweighted (Yin et al. 2018); robust to a minority
  of sites sending arbitrary updates.
- :func:`trimmed_mean`: the coordinate-wise mean after cutting the ``beta`` share of largest and of
  smallest values (Yin et al. 2018).
- :func:`clip_and_noise`: a site's update ``new - global`` clipped to L2 norm ``clip_norm`` and
  perturbed with Gaussian noise of standard deviation ``noise_multiplier * clip_norm``.
- :func:`gaussian_epsilon`: the (epsilon, delta) that the Gaussian mechanism gives after a number of
  rounds, by Rényi-DP composition (Mironov 2017), without any subsampling amplification.

The privacy unit is a site's whole data, and two datasets are neighbours when one *replaces* the
other (local DP: the server sees each site's message, so the question is what it can tell about the
data behind it, not whether the site took part). Two clipped updates then differ by up to
``2 * clip_norm`` (:data:`SENSITIVITY`), which is what the accounting uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from misuse.errors import InvalidParameterError, SchemaError

Arrays = list[np.ndarray]

#: the aggregation rules by name (the CLI's ``--strategy`` values)
STRATEGIES = ("fedavg", "fedmedian", "trimmed")
#: L2 sensitivity of a clipped update, in clip norms: any two updates of norm <= C are within 2C
#: (neighbouring datasets: one site's data replaced by any other)
SENSITIVITY = 2.0


def _stacked(results: Sequence[tuple[Sequence[np.ndarray], int]]) -> list[np.ndarray]:
    if not results:
        raise SchemaError("aggregate: no site results to aggregate")
    shapes = [tuple(np.shape(a) for a in arrays) for arrays, _ in results]
    if len(set(shapes)) != 1:
        raise SchemaError(f"aggregate: sites sent arrays of different shapes: {sorted(set(shapes))}")
    return [np.stack([np.asarray(r[0][i], dtype="float64") for r in results]) for i in range(len(results[0][0]))]


def fedavg(results: Sequence[tuple[Sequence[np.ndarray], int]]) -> Arrays:
    """Weighted mean of the sites' arrays; ``results`` holds (arrays, number of examples) pairs."""
    w = np.array([max(int(n), 0) for _, n in results], dtype="float64")
    if w.sum() <= 0:
        w = np.ones(len(results))
    w = w / w.sum()
    return [np.tensordot(w, s, axes=1) for s in _stacked(results)]


def fedmedian(results: Sequence[tuple[Sequence[np.ndarray], int]]) -> Arrays:
    """Coordinate-wise median of the sites' arrays (example counts are ignored)."""
    return [np.median(s, axis=0) for s in _stacked(results)]


def check_trim(beta: float, sites: int) -> int:
    """How many values :func:`trimmed_mean` cuts at each end for ``sites`` sites: ``floor(beta * sites)``.

    Raises
    ------
    InvalidParameterError
        When ``beta`` is outside [0, 0.5), or when ``beta > 0`` and it cuts nothing for this many
        sites (the result would silently be the plain unweighted mean); the message says which
        ``beta`` or how many sites would cut one value at each end.

    Examples
    --------
    >>> check_trim(0.2, 5)
    1
    >>> check_trim(0.2, 3)
    Traceback (most recent call last):
    ...
    misuse.errors.InvalidParameterError: trimmed mean with beta 0.2 over 3 site(s) trims nothing ...
    """
    if not 0 <= beta < 0.5:
        raise InvalidParameterError(f"trimmed_mean beta must be in [0, 0.5); got {beta!r}")
    k = math.floor(beta * sites)
    if beta > 0 and k == 0:
        enough = math.ceil(1 / beta)
        while math.floor(beta * enough) == 0:  # guard against 1 / beta rounding down
            enough += 1
        need = f"at least {enough} sites"
        if sites >= 3:  # with fewer, no beta below 0.5 cuts anything
            need = f"beta >= {math.ceil(100 / sites) / 100:g} for {sites} sites, or {need}"
        raise InvalidParameterError(
            f"trimmed mean with beta {beta:g} over {sites} site(s) trims nothing "
            f"(floor({beta:g} x {sites}) = 0): needs {need}"
        )
    return k


def trimmed_mean(results: Sequence[tuple[Sequence[np.ndarray], int]], beta: float = 0.2) -> Arrays:
    """Coordinate-wise mean after removing ``floor(beta * sites)`` values at each end.

    ``beta`` 0 is the plain mean; any other ``beta`` must cut at least one value at each end
    (:func:`check_trim`), so that asking for a robust rule never silently gives the mean.
    """
    stacked = _stacked(results)
    k = check_trim(beta, len(results))
    out = []
    for s in stacked:
        srt = np.sort(s, axis=0)
        out.append(srt[k : s.shape[0] - k].mean(axis=0))
    return out


def aggregate(name: str, results: Sequence[tuple[Sequence[np.ndarray], int]], beta: float = 0.2) -> Arrays:
    """Aggregate with the rule called ``name`` (one of :data:`STRATEGIES`)."""
    if name == "fedavg":
        return fedavg(results)
    if name == "fedmedian":
        return fedmedian(results)
    if name == "trimmed":
        return trimmed_mean(results, beta)
    raise InvalidParameterError(f"unknown aggregation strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def update_norm(new: Sequence[np.ndarray], old: Sequence[np.ndarray]) -> float:
    """L2 norm of the whole update ``new - old`` across all arrays."""
    return float(
        math.sqrt(sum(float(((np.asarray(a) - np.asarray(b)) ** 2).sum()) for a, b in zip(new, old, strict=True)))
    )


def clip_and_noise(
    new: Sequence[np.ndarray],
    old: Sequence[np.ndarray],
    clip_norm: float | None,
    noise_multiplier: float = 0.0,
    seed: int | None = None,
) -> Arrays:
    """``old + clip(new - old) + N(0, (noise_multiplier * clip_norm)^2)`` per coordinate.

    With ``clip_norm`` None the update is returned unchanged (and noise needs a clip norm).
    """
    if clip_norm is None:
        if noise_multiplier:
            raise InvalidParameterError("noise_multiplier > 0 needs a clip_norm (the sensitivity of an update)")
        return [np.asarray(a, dtype="float64").copy() for a in new]
    if clip_norm <= 0:
        raise InvalidParameterError(f"clip_norm must be > 0; got {clip_norm!r}")
    if noise_multiplier < 0:
        raise InvalidParameterError(f"noise_multiplier must be >= 0; got {noise_multiplier!r}")
    norm = update_norm(new, old)
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    rng = np.random.default_rng(seed)
    out = []
    for a, b in zip(new, old, strict=True):
        b = np.asarray(b, dtype="float64")
        d = (np.asarray(a, dtype="float64") - b) * scale
        if noise_multiplier > 0:
            d = d + rng.normal(scale=noise_multiplier * clip_norm, size=d.shape)
        out.append(b + d)
    return out


def gaussian_epsilon(noise_multiplier: float, rounds: int, delta: float = 1e-5) -> float:
    """Epsilon of a site's ``rounds`` updates, clipped to C and noised with std ``noise_multiplier * C``.

    Neighbouring datasets: one site's data replaced by any other, so the L2 sensitivity of a
    clipped update is ``2 C`` (:data:`SENSITIVITY`). One release is the Gaussian mechanism with
    noise ``z C`` on sensitivity ``2 C``: Rényi DP of order ``a`` is ``a (2 C)^2 / (2 (z C)^2) = 2 a / z^2``.
    ``rounds`` releases compose additively, ``rdp(a) = c a`` with ``c = 2 rounds / z^2``, and the
    conversion ``epsilon = min_a c a + log(1 / delta) / (a - 1)`` (Mironov 2017, Prop. 3) has its
    minimum at ``a = 1 + sqrt(log(1 / delta) / c)``: ``epsilon = c + 2 sqrt(c log(1 / delta))``.
    Every site takes part in every round: no sampling amplification.

    Examples
    --------
    >>> round(gaussian_epsilon(1.0, 20, 1e-5), 1)
    82.9
    """
    if noise_multiplier <= 0:
        return math.inf
    if not 0 < delta < 1 or rounds < 1:
        raise InvalidParameterError(f"gaussian_epsilon needs 0 < delta < 1 and rounds >= 1; got {delta!r}, {rounds!r}")
    c = rounds * SENSITIVITY**2 / (2 * noise_multiplier**2)
    return float(c + 2 * math.sqrt(c * math.log(1 / delta)))
