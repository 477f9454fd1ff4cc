"""The method table: the mixture registry reads it, aliases resolve, knob aliases expand."""

from __future__ import annotations

import numpy as np
import pytest

from forgetlab import vocabulary as V
from forgetlab.methods import get_method, list_methods, make_method
from forgetlab.methods.base import Problem
from forgetlab.methods.ttt_discover import adaptive_gamma
from forgetlab.mixture import MixtureParams, TwoModeMixture
from forgetlab.simconfig import SimulationConfig


def test_the_mixture_registry_is_the_table() -> None:
    assert list_methods() == V.method_names("mixture")
    for name in list_methods():
        assert dict(get_method(name).knobs) == V.knobs_for(name, "mixture"), name
        assert get_method(name).name == name


def test_every_knob_has_a_meaning_and_a_valid_default() -> None:
    for name, entry in V.METHODS.items():
        assert entry.summary and set(entry.sides) <= set(V.SIDES)
        assert set(entry.lm) <= set(entry.knobs), name  # overrides name existing knobs
        for side in entry.sides:
            for key, knob in V.knobs_for(name, side).items():
                assert knob.doc and knob.side in ("both", side), (name, key)
                knob.validate(knob.default, key)
        for old, new in entry.knob_aliases.items():
            assert old not in entry.knobs and set(new) <= set(entry.knobs)


def test_aliases_name_the_same_class() -> None:
    for old, new in V.ALIASES.items():
        assert get_method(old) is get_method(new)
    assert get_method("ttt-discover") is get_method("ttt_discover")
    assert get_method("rft").name == "self_sft"
    with pytest.raises(ValueError, match="unknown method 'nope'; allowed: distill"):
        get_method("nope")


def test_knob_aliases_expand_and_an_explicit_name_wins() -> None:
    assert V.expand_aliases("oapl", {"tau": 2.0, "lag": 3}) == {
        "tau_value": 2.0, "tau_ratio": 2.0, "lag": 3}
    assert V.expand_aliases("oapl", {"tau": 2.0, "tau_ratio": 0.5}) == {
        "tau_value": 2.0, "tau_ratio": 0.5}
    method = make_method("distill", divergence="jsd", mix=0.25)
    assert float(method.knob("beta")) == 0.25
    cfg = SimulationConfig(method="oapl", regime="finite", knobs={"tau": 0.5})
    assert cfg.knobs == {"tau_value": 0.5, "tau_ratio": 0.5}
    assert cfg.method == "oapl"
    with pytest.raises(ValueError, match="unknown knob 'tau_ratio' for method 'rl'"):
        make_method("rl", tau_ratio=1.0)


def test_the_gamma_cap_is_scale_free() -> None:
    """Four winners of eight: ln 2 cannot be reached, gamma (max r - min r) is the cap."""
    r = np.array([1.0, 1, 1, 1, 0, 0, 0, 0])
    for scale in (1.0, 0.01, 50.0):
        got = float(adaptive_gamma(scale * r)) * scale
        assert abs(got - V.ENTROPIC_GAMMA_CAP) < 1e-9 * V.ENTROPIC_GAMMA_CAP


def _problem() -> tuple[Problem, MixtureParams]:
    cov = np.eye(1)[None, None]
    target = TwoModeMixture(np.array([[0.5]]), np.array([[[0.0]]]), np.array([[[4.0]]]), cov)
    initial = TwoModeMixture(np.array([[0.6]]), np.array([[[0.2]]]), np.array([[[2.0]]]), cov)
    params = MixtureParams(np.array([[0.6]]), np.array([[[0.2]]]), np.array([[[2.0]]]))
    return Problem(target, initial), params


def test_sdft_teacher_base_is_the_frozen_start() -> None:
    """With teacher='base' the EMA state never moves, so the gradient after any number of steps
    is the one against the initial model's teacher; with 'ema' it follows the student."""
    problem, params0 = _problem()
    moved = MixtureParams(np.array([[0.4]]), np.array([[[0.5]]]), np.array([[[3.0]]]))
    grads = {}
    for teacher in ("base", "ema"):
        method = make_method("sdft", teacher=teacher, tau_ema=0.5, lam_demo=0.3)
        state = method.init_state(problem, params0)
        for step in range(3):
            state = method.gradient(problem, moved, state, step, None).state
        grads[teacher] = method.gradient(problem, moved, state, 3, None).grad
        if teacher == "base":
            fresh = method.init_state(problem, params0)
            once = method.gradient(problem, moved, fresh, 0, None).grad
            for a, b in zip(grads[teacher], once, strict=True):
                np.testing.assert_array_equal(a, b)
    assert not np.allclose(grads["base"].mean_new, grads["ema"].mean_new)


def test_the_language_model_registry_is_the_table() -> None:
    pytest.importorskip("torch")
    from forgetlab.lm.methods import METHODS as LM_METHODS
    from forgetlab.lm.methods import make_method as make_lm_method

    assert sorted(LM_METHODS) == sorted(V.method_names("lm"))
    for name, cls in LM_METHODS.items():
        assert cls.name == name
        assert make_lm_method(name).knobs().keys() == V.knobs_for(name, "lm").keys(), name
