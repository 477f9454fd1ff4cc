"""The fixed set of runs whose numbers tests/test_pinned_runs.py pins (every method, both regimes,
d = 1 and d = 3 with a non-diagonal covariance, B = 1 to 64, the rl estimators and baselines).

Regenerate the fixture (only on purpose, naming the change that moved the numbers):

    python tests/pinned_runs.py > tests/fixtures/pinned_runs.json
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from forgetlab import simulate
from forgetlab.simconfig import SimulationConfig

COV3 = [[1.0, 0.3, 0.0], [0.3, 0.8, 0.1], [0.0, 0.1, 0.5]]
D3 = {"dim": 3, "cov": COV3, "separation": 3.0}


def runs() -> dict[str, SimulationConfig]:
    """name -> configuration; finite runs use 3 seeds."""
    out: dict[str, SimulationConfig] = {}

    def add(name: str, method: str, regime: str, knobs: dict[str, Any] | None = None,
            problem: dict[str, Any] | None = None, **extra: Any) -> None:
        fields: dict[str, Any] = {"steps": 12, "stride": 4, "learning_rate": 0.05,
                                  "batch_size": 16, "seeds": 3 if regime == "finite" else 1,
                                  "seed": 11, **extra}
        out[name] = SimulationConfig(method=method, regime=regime, knobs=knobs or {},
                                     problem={"alpha": 0.3, **(problem or {})}, **fields)

    for method in ("sft", "rl", "distill", "replay-rl", "sdft"):
        add(f"{method}/population", method, "population")
        add(f"{method}/population/d3", method, "population", problem=D3)
    add("ttt-discover/population", "ttt-discover", "population",
        {"reward": "verifiable", "adaptive_gamma": False})
    for method in ("sft", "rl", "distill", "oapl", "replay-rl", "sdft", "self-sft",
                   "ttt-discover"):
        add(f"{method}/finite", method, "finite")
        add(f"{method}/finite/d3", method, "finite", problem=D3, batch_size=64)
    add("sft/finite/replay", "sft", "finite", {"replay": "old", "replay_fraction": 0.3})
    add("rl/finite/B1", "rl", "finite", batch_size=1)
    for baseline in ("none", "mean"):
        add(f"rl/finite/{baseline}", "rl", "finite", {"baseline": baseline})
    add("rl/finite/pathwise", "rl", "finite", {"estimator": "pathwise"}, problem=D3)
    add("rl/finite/grpo", "rl", "finite", {"grpo": True, "group_size": 4})
    add("rl/finite/reference", "rl", "finite", {"reference": "initial", "tau": 0.5},
        optimizer="adam")
    return out


def values(config: SimulationConfig) -> dict[str, list[str]]:
    """The recorded parameter paths as exact hexadecimal floats."""
    traj = simulate(config)
    return {k: [float(v).hex() for v in np.ravel(getattr(traj, k))]
            for k in ("weight_old", "mean_old", "mean_new")}


def main() -> None:
    print(json.dumps({name: values(cfg) for name, cfg in runs().items()}, indent=0))


if __name__ == "__main__":
    main()
