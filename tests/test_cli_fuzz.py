"""Fuzz test of the command line: random mutations of valid TOML configurations and sweep specs.

Each case starts from a valid file (a simulation config, a theory config, a sweep spec) and
changes one to three keys: a wrong type, a value out of range, NaN or inf, a boolean, an
unknown key, a huge size, a deleted key; or it damages the bytes (cut short, not UTF-8).
Every case must end with exit code 0 or 2, print no traceback, leave no partial output (no
plot or result directory after an error), and finish in bounded time; the whole run holds the
process's peak memory under a bound. The time ceiling of the resource bounds is lowered to 2 s
so that a case either runs quickly or is refused by the estimate (which is what is tested).
About a minute in all on two cores.
"""

from __future__ import annotations

import copy
import importlib
import json
import math
import resource
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forgetlab.cli import main
from forgetlab.sweep import resources

SIMULATE = {"method": "sft", "regime": "population", "steps": 20, "stride": 5,
            "learning_rate": 0.3, "knobs": {"replay": "old", "replay_fraction": 0.3},
            "problem": {"dim": 1, "separation": 4.0, "alpha": 0.5, "beta0": 0.5}}
FINITE = {"method": "rl", "regime": "finite", "steps": 20, "stride": 5, "seeds": 2,
          "batch_size": 8, "learning_rate": 0.05, "problem": {"dim": 2, "alpha": 0.3}}
THEORY = {"dim": 2, "separation": 4.0, "alpha": 0.3, "beta0": 0.5, "replay": 0.2,
          "batch_size": 16, "step_size": 0.2, "steps": 20}
SPEC = {"name": "fuzz", "seeds": 2, "chunk_size": 4,
        "base": {"regime": "population", "steps": 10, "stride": 5, "learning_rate": 0.3},
        "axes": {"problem.separation": [2.0, 4.0],
                 "learning_rate": {"start": 0.1, "stop": 0.3, "num": 2}}}

HUGE = [10**9, 10**12, 2**62, -(2**62)]
VALUES = st.one_of(
    st.integers(-3, 3), st.sampled_from(HUGE), st.booleans(),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e300, 1e-300, -0.0, 0.5, 1e6]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6), st.lists(st.integers(-2, 2), max_size=3),
    st.lists(st.sampled_from([0.0, 1.0, math.inf]), min_size=1, max_size=3),
    st.fixed_dictionaries({"start": st.sampled_from([0.0, 1.0]),
                           "stop": st.sampled_from([1.0, 1e300]),
                           "num": st.sampled_from([1, 3, 10**8])}),
    st.fixed_dictionaries({"random": st.sampled_from(["uniform", "nope"]),
                           "low": st.sampled_from([0.0, 1.0]), "high": st.just(2.0),
                           "num": st.sampled_from([2, 10**7]), "seed": st.just(1)}),
)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) \
            else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """A minimal TOML writer: scalars, lists and inline tables, then [sub.tables]."""
    lines = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in data.items()
             if not (isinstance(v, dict) and _is_table(k, v))]
    text = "\n".join(lines) + "\n"
    for k, v in data.items():
        if isinstance(v, dict) and _is_table(k, v):
            name = f"{prefix}{json.dumps(k)}"
            text += f"[{name}]\n" + to_toml(v, name + ".")
    return text


def _is_table(key: str, value: dict[str, Any]) -> bool:
    return not ({"start", "random"} & set(value))


@st.composite
def mutated(draw: Any, base: dict[str, Any]) -> bytes:
    """A valid document with up to three keys mutated (mostly one), or its text damaged."""
    data = copy.deepcopy(base)
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
        node = data
        while True:
            tables = [k for k, v in node.items() if isinstance(v, dict) and _is_table(k, v)]
            if tables and draw(st.booleans()):
                node = node[draw(st.sampled_from(tables))]
            else:
                break
        action = draw(st.sampled_from(["set", "set", "set", "unknown", "delete"]))
        keys = list(node)
        if action == "delete" and keys:
            del node[draw(st.sampled_from(keys))]
        elif action == "unknown" or not keys:
            node[draw(st.sampled_from(["bogus", "alpah", "seeds", "problem.dim"]))] = \
                draw(VALUES)
        else:
            node[draw(st.sampled_from(keys))] = draw(VALUES)
    text = to_toml(data).encode()
    damage = draw(st.sampled_from(["none"] * 6 + ["cut", "latin1"]))
    if damage == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif damage == "latin1":
        text = text.replace(b'"', b'"\xe9', 1)
    return text


def _check(result: Any, outputs: list[Path], start: float) -> None:
    assert result.exit_code in (0, 2), (result.exit_code, result.output)
    assert "Traceback" not in result.output, result.output
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    if result.exit_code == 2:
        assert result.output.strip().splitlines()[-1].startswith("error: "), result.output
        for path in outputs:
            assert not path.exists(), f"partial output {path} after an error"
    assert time.perf_counter() - start < 30, "a case took too long"


@pytest.fixture(autouse=True)
def _short_ceilings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources, "CEILING_SECONDS", 2.0)


def _settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@_settings(60)
@given(text=st.one_of(mutated(SIMULATE), mutated(FINITE)))
def test_simulate_fuzz(tmp_path_factory: pytest.TempPathFactory, text: bytes) -> None:
    d = tmp_path_factory.mktemp("sim")
    (d / "c.toml").write_bytes(text)
    start = time.perf_counter()
    plot = d / "p.png"
    result = CliRunner().invoke(main, ["simulate", "--config", str(d / "c.toml"), "--json",
                                       "--plot", str(plot)])
    _check(result, [plot], start)
    if result.exit_code == 0:
        assert "summary" in json.loads(result.stdout.splitlines()[0]) and plot.exists()


@_settings(60)
@given(text=mutated(SPEC))
def test_sweep_plan_fuzz(tmp_path_factory: pytest.TempPathFactory, text: bytes) -> None:
    d = tmp_path_factory.mktemp("plan")
    (d / "s.toml").write_bytes(text)
    start = time.perf_counter()
    _check(CliRunner().invoke(main, ["sweep", "plan", str(d / "s.toml")]), [], start)


@_settings(20)
@given(text=mutated(SPEC))
def test_sweep_run_fuzz(tmp_path_factory: pytest.TempPathFactory, text: bytes) -> None:
    d = tmp_path_factory.mktemp("run")
    (d / "s.toml").write_bytes(text)
    out = d / "out"
    start = time.perf_counter()
    result = CliRunner().invoke(main, ["sweep", "run", str(d / "s.toml"), "--out", str(out),
                                       "--workers", "1", "--no-progress"])
    _check(result, [out], start)


@_settings(12)
@given(text=mutated(THEORY))
def test_theory_fuzz(tmp_path_factory: pytest.TempPathFactory, text: bytes,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.import_module("forgetlab.cli.theory"),
                        "THEORY_CEILING_SECONDS", 3.0)
    d = tmp_path_factory.mktemp("theory")
    (d / "t.toml").write_bytes(text)
    start = time.perf_counter()
    result = CliRunner().invoke(main, ["theory", "--config", str(d / "t.toml"), "--json"])
    _check(result, [], start)
    if result.exit_code == 0:
        assert json.loads(result.stdout)["schema_version"] == 1


def test_peak_memory_of_the_fuzz_run_is_bounded() -> None:
    """Runs after the fuzz cases (file order): the process never held more than 4 GiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert peak < 4 * 2**30, f"peak resident memory {peak / 2**30:.1f} GiB"


def test_the_toml_writer_round_trips() -> None:
    import tomllib

    for doc in (SIMULATE, FINITE, THEORY, SPEC):
        assert tomllib.loads(to_toml(doc)) == doc
