"""The dynamics engine as a sweep chunk runner: one :func:`forgetlab.dynamics.simulate` call
per chunk, configurations on the leading axis, one table row per (configuration, seed).

Configurations are grouped by :func:`forgetlab.dynamics.batch_key`, what ``simulate`` needs
equal within a call (method, regime, steps, optimiser, batch size, dimension, non-float
knobs); float knobs, learning rates and the problem may differ inside a chunk. A sweep run
(configuration c, seed index s) draws from
``SeedSequence(config.seed, spawn_key=(int(config_id), s))``, config_id the hash of the
resolved configuration, so its numbers do not depend on the chunk or worker that runs it.
Population runs are deterministic: every seed index of a configuration gets the same row.

Row metrics (the last recorded step T unless stated): ``weight_final`` (beta(T)),
``weight_min_final`` (min over every step of beta), ``drift_final`` (D(m_o(T), a)),
``drift_sup_final`` (sup over every step of the drift), the other measures of
:func:`forgetlab.metrics.snapshot` and method diagnostics as ``<name>_final``,
``starved_total`` (starved batches over the run), ``max_weight_max`` (largest importance
weight seen) and ``diverged_step`` (-1 for a healthy run).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from forgetlab.sweep.spec import Run

_N_PATHS = 16  # recorded scalar paths per run (parameters and measures), for memory estimates
_QUAD_NODES = 240  # nodes per expectation (forgetlab.quadrature: at most ~15 panels x 16)
_QUAD_BLOCK = 4096  # cells per vectorised quadrature block
# Rough time model, one core (measured on the development machine, order of magnitude only):
# seconds per step of the Python loop, plus per cell (population: one quadrature; finite: per
# sample coordinate), and the same population cost per recorded step for the exact measures.
# (bench/resource_estimate.py prints the estimate beside the measured time.)
_STEP_S = {"population": 6e-3, "finite": 3e-3}
_POP_CELL_S = 2.5e-4
_SAMPLE_S = 7e-7


def _cells(config: dict[str, Any], configs: int, seeds: int) -> int:
    """Cells C x S of one call: every seed index in the finite-batch regime, one in the
    population regime (its runs are deterministic)."""
    return configs * (1 if config["regime"] == "population" else seeds)


class DynamicsRunner:
    """Chunk runner for :class:`forgetlab.simconfig.SimulationConfig` configurations."""

    name = "forgetlab.dynamics/1"

    def resolve(self, config: dict[str, Any]) -> dict[str, Any]:
        """Validate with :func:`forgetlab.simconfig.parse_config`; fill every knob's default.

        ``seeds`` is the sweep's, never a configuration field (it would change the identity
        of every run when seeds are added).
        """
        from forgetlab.simconfig import parse_config

        if "seeds" in config:
            raise ValueError("seeds: set the number of seeds at the top level of the sweep "
                             "spec, not as a configuration field")
        parsed = parse_config(config)
        data = parsed.model_dump(mode="json", exclude={"seeds"})
        for name, knob in parsed.knob_spec().items():
            if knob.kind is not object:
                data["knobs"].setdefault(name, knob.default)
        return data

    def group_key(self, config: dict[str, Any]) -> Hashable:
        """Fields that must be equal within one ``simulate`` call: :func:`dynamics.batch_key`
        of the resolved configuration (read as data, not validated again)."""
        from forgetlab.dynamics import batch_key

        return batch_key(config)

    def estimate_bytes(self, config: dict[str, Any], configs: int, seeds: int) -> int:
        """Peak working memory of one ``simulate`` call on ``configs`` configurations like
        ``config`` with seed indices ``0 .. seeds - 1``, for C x S cells.

        Recorded paths ``[C, S, T]`` (16 measures plus 2 d mean coordinates, held twice:
        recorder and output); quadrature of the exact engine (population gradients, and the
        recorded measures unless ``exact_metrics`` is off): about 240 nodes times 18
        temporaries per cell, in blocks of at most 4,096 cells; finite-batch samples
        ``[C, S, B, d + 1]`` times 4 temporaries. Calibrated against tracemalloc peaks
        (tests/test_sweep_plan_memory.py).
        """
        finite, cells = config["regime"] == "finite", _cells(config, configs, seeds)
        d = config["problem"]["dim"]
        n_t = config["steps"] // config["stride"] + 2
        total = 2 * cells * n_t * (_N_PATHS + 2 * d) * 8
        if not finite or config.get("exact_metrics", True):
            total += min(cells, _QUAD_BLOCK) * _QUAD_NODES * 18 * 8
        if finite:
            total += 4 * cells * config["batch_size"] * (d + 1) * 8
        return int(total)

    def estimate_seconds(self, config: dict[str, Any], configs: int, seeds: int) -> float:
        """Rough run time of one ``simulate`` call (C x S cells, T steps; arguments as
        :meth:`estimate_bytes`).

        T (s_step + C S c) with s_step = 6 ms (population) or 3 ms (finite), c = 250 us
        per cell (population quadrature) or 0.7 us times B (d + 1) (finite samples), plus
        (T / stride) (6 ms + 250 us C S) for the exact measures at the recorded steps.
        """
        finite, cells = config["regime"] == "finite", _cells(config, configs, seeds)
        steps = config["steps"]
        per_cell = (_SAMPLE_S * config["batch_size"] * (config["problem"]["dim"] + 1) if finite
                    else _POP_CELL_S)
        total = steps * (_STEP_S[config["regime"]] + cells * per_cell)
        if not finite or config.get("exact_metrics", True):
            total += (steps // config["stride"] + 2) * (_STEP_S["population"] + cells * _POP_CELL_S)
        return float(total)

    def run(self, runs: Sequence[Run]) -> dict[str, NDArray[Any]]:
        """Simulate the chunk's configurations in one call and pick each run's row."""
        from forgetlab.dynamics import simulate
        from forgetlab.simconfig import parse_config

        order: dict[str, int] = {}
        for r in runs:
            order.setdefault(r.config_id, len(order))
        first = runs[0].config
        population = first["regime"] == "population"
        seeds = 1 if population else max(r.seed_index for r in runs) + 1
        configs: dict[str, Any] = {}
        for r in runs:
            if r.config_id not in configs:
                configs[r.config_id] = parse_config({**r.config, "seeds": seeds})
        traj = simulate(list(configs.values()), config_ids=[int(cid, 16) for cid in configs])
        c = np.array([order[r.config_id] for r in runs])
        s = np.zeros(len(runs), dtype=int) if population else np.array(
            [r.seed_index for r in runs])
        out: dict[str, NDArray[Any]] = {"weight_final": traj.weight_old[c, s, -1]}
        for name, path in traj.metrics.items():
            if name == "starved":
                out["starved_total"] = path[c, s].sum(axis=-1)
            elif name == "max_weight":
                out["max_weight_max"] = path[c, s].max(axis=-1)
            else:
                out[f"{name}_final"] = path[c, s, -1]
        out["diverged_step"] = traj.diverged_step[c, s].astype(np.int64)
        return out
