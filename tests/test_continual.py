"""K-stage chains: the split retention matrix against its theory and across regimes.

Independent checks: the stage fixed points (closed form from the data or target weights)
against the exact population dynamics; the finite-batch simulation (Monte Carlo over seeds)
against the population run within 5 standard errors; the overlap-gated drift bound on every
reverse-KL stage. Most chains are in d = 1 (rank 1: a fast exact rule).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from forgetlab import continual as c
from forgetlab import kpopulation as kp
from forgetlab.cli import main


def chain(method: str, dim: int = 1, **stage: object) -> dict:
    return {"dim": dim, "separation": 3.0, "stages": [
        {"method": method, **stage, **({"replay": list(range(i))} if "replay_fraction" in stage
                                       else {})} for i in (1, 2)]}


def test_replay_chain_reaches_the_replay_fractions():
    cfg = c.parse_continual(chain("sft", optimizer="em", steps=60, replay_fraction=0.2))
    res = c.run_continual(cfg)
    k = res.n_tasks
    lower = np.tril(np.ones((k, k), dtype=bool))
    assert np.allclose(res.retained_mass[lower], res.predicted_mass[lower], atol=1e-6)
    assert np.all(res.drift[lower] < 1e-4)
    assert np.isnan(res.retained_mass[0, 1])
    s = res.summary()
    assert abs(s["backward_transfer"] - s["predicted_backward_transfer"]) < 1e-6


def test_sft_chain_drains_every_old_mode():
    res = c.run_continual(c.parse_continual(chain("sft", optimizer="em", steps=60)))
    assert np.all(res.predicted_mass[1:, 0] == 0.0)
    # forward KL drains the old mode (towards 0 at a polynomial rate), monotone over stages
    assert res.retained_mass[1, 0] < 0.1 and res.retained_mass[2, 0] < res.retained_mass[1, 0]
    assert res.summary()["forgetting"] > 0.9


def test_first_stage_matches_the_two_mode_engine():
    """Stage 1 is a two-mode problem: the K-mode chain against the two-mode dynamics (its own
    engine, 1-D quadrature, and its own EM loop)."""
    from forgetlab.dynamics import simulate
    from forgetlab.simconfig import parse_config

    res = c.run_continual(c.parse_continual(chain("sft", optimizer="em", steps=60)))
    traj = simulate(parse_config({"method": "sft", "optimizer": "em", "steps": 60, "stride": 60,
                                  "problem": {"dim": 1, "separation": 3.0, "beta0": 0.5,
                                              "new_mean_start": 0.5}}))
    assert abs(res.retained_mass[1, 0] - traj.weight_old[0, 0, -1]) < 1e-9
    assert abs(res.drift[1, 0] - traj.drift[0, 0, -1]) < 1e-8


def test_dropped_moment_term_is_caught(monkeypatch):
    """Mutation: EM without the first-moment term E[r_k (x - mu)] moves the means wrongly."""
    original = kp.responsibility_moments

    def broken(mix, means, proj=None):
        e0, e1 = original(mix, means, proj)
        return e0, 0.0 * e1

    monkeypatch.setattr(kp, "responsibility_moments", broken)
    with pytest.raises(AssertionError):
        test_replay_chain_reaches_the_replay_fractions()


def test_reverse_chain_keeps_modes_and_drift_is_gated():
    cfg = c.parse_continual({**chain("reverse_kl", dim=2, steps=40, learning_rate=1.0),
                             "entry_weight": 0.3})
    res = c.run_continual(cfg)
    lower = np.tril(np.ones((3, 3), dtype=bool))
    assert np.allclose(res.retained_mass[lower], res.predicted_mass[lower], atol=2e-3)
    ok = np.isfinite(res.predicted_drift_bound)
    assert np.all(res.drift[ok] <= res.predicted_drift_bound[ok])


def test_keep_drops_a_mode_under_reverse_kl():
    cfg = c.parse_continual({"dim": 1, "separation": 3.0, "stages": [
        {"method": "reverse_kl", "steps": 60, "learning_rate": 1.0},
        {"method": "reverse_kl", "steps": 200, "learning_rate": 1.0, "keep": [1]}]})
    res = c.run_continual(cfg)
    assert res.predicted_mass[2, 0] == 0.0
    assert res.retained_mass[2, 0] < 0.1 < res.retained_mass[1, 0]


def test_finite_batch_agrees_with_population():
    base = chain("sft", steps=120, learning_rate=0.5, replay_fraction=0.25)
    pop = c.run_continual(c.parse_continual(base))
    fin = c.run_continual(c.parse_continual({**base, "regime": "finite", "seeds": 32,
                                             "batch_size": 64}))
    lower = np.tril(np.ones((3, 3), dtype=bool))
    err = np.abs(fin.retained_mass - pop.retained_mass)[lower]
    assert np.all(err <= 5 * fin.retained_mass_se[lower] + 2e-3)
    again = c.run_continual(c.parse_continual({**base, "regime": "finite", "seeds": 32,
                                               "batch_size": 64}))
    assert np.array_equal(again.retained_mass, fin.retained_mass, equal_nan=True)


def test_sdft_keeps_weights_when_the_path_has_little_overlap():
    """SDFT's 'weights stay' is first order in the overlap along the new mode's path: with the
    new mode starting near its task (separation 6, start 0.8) the weights move by < 0.05; from
    the midpoint they move by about 0.1 (docs/continual.md), so that case is not asserted."""
    cfg = c.parse_continual({**chain("sdft", steps=60, learning_rate=0.5, lam_demo=0.5,
                                     tau_ema=0.2), "separation": 6.0, "new_mean_start": 0.8})
    res = c.run_continual(cfg)
    lower = np.tril(np.ones((3, 3), dtype=bool))
    assert np.allclose(res.retained_mass[lower], res.predicted_mass[lower], atol=0.05)
    assert np.all(res.drift[2, :2] < 0.1)


def test_cl_summaries_by_hand():
    mass = np.array([[1.0, np.nan, np.nan], [0.6, 0.4, np.nan], [0.3, 0.5, 0.2]])
    s = c.cl_summaries(mass)
    assert s["backward_transfer"] == pytest.approx(((0.3 - 1.0) + (0.5 - 0.4)) / 2)
    assert s["forgetting"] == pytest.approx(((1.0 - 0.3) + (0.4 - 0.5)) / 2)
    assert s["average_retention"] == pytest.approx((0.3 + 0.5 / 0.4) / 2)


@pytest.mark.parametrize("bad, field", [
    ({"stages": [{"replay": [1], "replay_fraction": 0.1}]}, "not an earlier task"),
    ({"stages": [{"method": "reverse_kl", "optimizer": "em"}]}, "optimizer"),
    ({"stages": [{"replay": [0], "replay_fraction": 1.2}]}, "replay_fraction"),
    ({"separation": -1, "stages": [{}]}, "separation"),
    ({"stages": [{"learning_rate": 0.1, "colour": 3}]}, "colour"),
])
def test_validation_names_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        c.parse_continual(bad)


def test_cli_json_schema_and_errors(tmp_path):
    runner = CliRunner()
    cfg = tmp_path / "chain.toml"
    cfg.write_text('dim = 1\nseparation = 3.0\n[[stages]]\nmethod = "sft"\noptimizer = "em"\n'
                   'steps = 20\n[[stages]]\nmethod = "sft"\noptimizer = "em"\nsteps = 20\n'
                   'replay = [0, 1]\nreplay_fraction = [0.1, 0.2]\n')
    plot = tmp_path / "r.png"
    out = runner.invoke(main, ["continual", "--config", str(cfg), "--json", "--plot", str(plot)])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert set(data) == {"stages", "retained_mass", "drift", "predicted_mass", "summary"}
    assert data["stages"] == 3 and data["retained_mass"][0][1] is None
    assert data["predicted_mass"][2][:2] == pytest.approx([0.1, 0.2])
    assert plot.stat().st_size > 0
    bad = tmp_path / "bad.toml"
    bad.write_text("dim = 0\n[[stages]]\n")
    out = runner.invoke(main, ["continual", "--config", str(bad)])
    assert out.exit_code == 2 and "dim" in out.output and "Traceback" not in out.output
    out = runner.invoke(main, ["continual"])
    assert out.exit_code == 2 and "--preset" in out.output
