"""MixtureConfig: defaults, TOML loading, derived model objects and one-line validation errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from forgetlab.config import MixtureConfig
from forgetlab.gaussian import mahalanobis


def test_default_models() -> None:
    cfg = MixtureConfig()
    p, q0 = cfg.target(), cfg.initial()
    assert p.dim == cfg.dim == 2
    assert float(p.separation()) == pytest.approx(cfg.separation, rel=1e-14)
    assert float(p.weight_old) == cfg.alpha and float(q0.weight_old) == cfg.beta0
    np.testing.assert_array_equal(q0.mean_old, p.mean_old)  # the old component starts correct
    np.testing.assert_allclose(q0.mean_new, 0.5 * (p.mean_old + p.mean_new))


def test_separation_under_a_full_covariance() -> None:
    cov = [[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 3.0]]
    cfg = MixtureConfig(dim=3, separation=5.5, cov=cov, learner_new_mean=[1.0, 2.0, 3.0])
    p = cfg.target()
    assert float(mahalanobis(p.mean_old, p.mean_new, cov)) == pytest.approx(5.5, rel=1e-13)
    np.testing.assert_array_equal(cfg.initial().mean_new, [1.0, 2.0, 3.0])
    resolved = cfg.resolved()
    assert resolved["cov"] == cov and len(resolved["new_mean"]) == 3
    assert MixtureConfig.from_dict({**resolved}).resolved() == resolved  # a fixed point


def test_toml_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('dim = 1\nold_mean = [0.0]\nnew_mean = [2.5]\ncov = 0.5\nalpha = 0.2\n'
                    'replay = 0.0\nbatch_size = 32\n')
    cfg = MixtureConfig.from_toml(path, beta0=0.7)
    assert cfg.beta0 == 0.7 and cfg.batch_size == 32
    assert float(cfg.target().separation()) == pytest.approx(2.5 / np.sqrt(0.5))
    assert cfg.updated(alpha=0.4).alpha == 0.4


@pytest.mark.parametrize(("data", "pieces"), [
    ({"alpah": 0.3}, ["unknown config key 'alpah'", "alpha"]),
    ({"alpha": 1.5}, ["'alpha'", "(0, 1)"]),
    ({"alpha": float("nan")}, ["'alpha'", "finite", "(0, 1)"]),
    ({"beta0": 0.0}, ["'beta0'", "(0, 1)"]),
    ({"replay": 1.0}, ["'replay'", "[0, 1)"]),
    ({"batch_size": 0}, ["'batch_size'", ">= 1"]),
    ({"step_size": -0.1}, ["'step_size'", "> 0"]),
    ({"separation": 50.0}, ["'separation'", "[1e-06, 40]"]),
    ({"separation": 1e-300}, ["'separation'", "[1e-06, 40]"]),
    ({"dim": True}, ["'dim'", "boolean"]),
    ({"alpha": True}, ["'alpha'", "boolean"]),
    ({"dim": 5000}, ["'dim'", "[1, 1000]"]),
    ({"cov": [[1.0, 2.0], [2.0, 1.0]]}, ["cov", "positive definite"]),
    ({"cov": [[1.0, 0.1], [0.0, 1.0]]}, ["cov", "symmetric"]),
    ({"cov": [1.0, 2.0, 3.0]}, ["cov", "d=2"]),
    ({"cov": -1.0}, ["cov", "> 0"]),
    ({"old_mean": [0.0, 0.0], "new_mean": [1.0]}, ["new_mean", "dim = 2"]),
    ({"old_mean": [0.0, 0.0]}, ["old_mean and new_mean"]),
    ({"old_mean": [0.0, 0.0], "new_mean": [0.0, 0.0]}, ["D(old_mean, new_mean)", "[1e-06, 40]"]),
    ({"dim": "two"}, ["'dim'", "integer"]),
])
def test_bad_input_is_one_line_naming_the_field(data: dict, pieces: list[str]) -> None:
    with pytest.raises(ValueError) as err:
        MixtureConfig.from_dict(data)
    message = str(err.value)
    assert "\n" not in message
    for piece in pieces:
        assert piece in message, message


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be read"):
        MixtureConfig.from_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("alpha = = 0.3\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        MixtureConfig.from_toml(bad)
    nan = tmp_path / "nan.toml"
    nan.write_text("alpha = nan\n")
    with pytest.raises(ValueError, match="'alpha'"):
        MixtureConfig.from_toml(nan)
