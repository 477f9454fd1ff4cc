"""Sweep plots: aggregation over seeds, theory predictions, files written by the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forgetlab.sweep.plot import aggregate, plot_sweep, predicted


def _table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for method in ("sft", "replay-rl"):
        for sep in (1.0, 2.0, 3.0):
            for lam in (0.1, 0.5, 0.9):
                for seed in range(4):
                    rows.append({"run_id": f"{method}{sep}{lam}{seed}", "config_id": "c",
                                 "seed_index": seed, "method": method, "knobs.replay": "old",
                                 "knobs.replay_fraction": lam, "problem.separation": sep,
                                 "problem.alpha": 0.5, "steps": 10,
                                 "weight_final": lam + 0.1 * sep + rng.normal(0, 0.01)})
    return pd.DataFrame(rows)


def test_aggregate_means_over_seeds_and_attaches_theory():
    table = _table()
    agg = aggregate(table, "problem.separation", "knobs.replay_fraction", "weight_final")
    assert len(agg) == 18 and (agg["n"] == 4).all()
    one = table[(table.method == "sft") & (table["problem.separation"] == 2.0)
                & (table["knobs.replay_fraction"] == 0.5)]["weight_final"]
    row = agg[(agg.method == "sft") & (agg["problem.separation"] == 2.0)
              & (agg["knobs.replay_fraction"] == 0.5)].iloc[0]
    assert row["mean"] == pytest.approx(one.mean(), rel=1e-12)
    assert row["sd"] == pytest.approx(one.std(), rel=1e-12)
    sft = agg[agg.method == "sft"]
    np.testing.assert_array_equal(sft["theory"], sft["knobs.replay_fraction"])
    assert (agg[agg.method == "replay-rl"]["theory"] == 0.5).all()


def test_predictions_only_where_theory_has_one():
    assert predicted({"method": "sft", "knobs.replay": "old", "knobs.replay_fraction": 0.3},
                     "weight_final") == 0.3
    assert predicted({"method": "sft", "knobs.replay": "none"}, "weight_final") == 0.0
    assert predicted({"method": "sft", "knobs.replay": "initial"}, "weight_final") is None
    assert predicted({"method": "replay-rl", "problem.alpha": 0.2}, "weight_final") == 0.2
    assert predicted({"method": "sft", "knobs.replay": "old", "knobs.replay_fraction": 0.3},
                     "drift_final") is None


def test_bad_fields_are_named():
    with pytest.raises(ValueError, match="--metric: 'nope' is not a column"):
        aggregate(_table(), "problem.separation", None, "nope")
    with pytest.raises(ValueError, match="--x: 'sep' is not a column"):
        aggregate(_table(), "sep", None, "weight_final")


@pytest.mark.parametrize("y", ["knobs.replay_fraction", None])
def test_plot_writes_a_png(tmp_path, y):
    out = tmp_path / "p.png"
    fig = plot_sweep(_table(), "problem.separation", y, "weight_final", out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    assert len([a for a in fig.axes if a.get_visible()]) >= (1 if y is None else 2)
