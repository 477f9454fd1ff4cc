"""Sweep specification: expansion of axes, validation messages, run identities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from forgetlab.sweep.plan import make_plan, pack_chunks
from forgetlab.sweep.spec import load_spec, parse_spec
from sweep_toy import ToyRunner


def test_grid_is_cartesian_product_in_file_order():
    spec = parse_spec({"seeds": 2, "axes": {"x": [1.0, 2.0, 3.0], "kind": ["a", "b"]}})
    assert spec.n_configs == 6 and spec.n_runs == 12
    xs = [(c["x"], c["kind"]) for c in map(spec.raw_config, range(spec.n_configs))]
    assert xs == [(1.0, "a"), (1.0, "b"), (2.0, "a"), (2.0, "b"), (3.0, "a"), (3.0, "b")]
    with pytest.raises(IndexError):
        spec.raw_config(6)


def test_ranges_linear_step_and_log():
    spec = parse_spec({"axes": {
        "x": {"start": 0.0, "stop": 1.0, "num": 5},
        "y": {"start": 0.1, "stop": 0.5, "step": 0.1},
        "z": {"start": 1e-3, "stop": 1e-1, "num": 3, "log": True},
        "k": {"start": 2, "stop": 8, "step": 3},
    }})
    np.testing.assert_allclose(spec.axes["x"], [0, 0.25, 0.5, 0.75, 1.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(spec.axes["y"], [0.1, 0.2, 0.3, 0.4, 0.5], rtol=1e-12)
    np.testing.assert_allclose(spec.axes["z"], [1e-3, 1e-2, 1e-1], rtol=1e-12)
    assert spec.axes["k"] == [2, 5, 8] and all(isinstance(v, int) for v in spec.axes["k"])


def test_random_draws_are_reproducible_bounded_and_keyed_by_field():
    table = {"random": "loguniform", "low": 1e-3, "high": 1e-1, "num": 200, "seed": 7}
    a = parse_spec({"axes": {"lr": table}}).axes["lr"]
    b = parse_spec({"axes": {"x": [1.0], "lr": table}}).axes["lr"]
    c = parse_spec({"axes": {"lr": {**table, "seed": 8}}}).axes["lr"]
    assert a == b and a != c
    logs = np.log10(a)
    assert logs.min() >= -3 and logs.max() <= -1
    # log10 of a loguniform draw is uniform on [-3, -1]: mean -2, sd 2/sqrt(12); 5 standard errors
    assert abs(logs.mean() + 2) < 5 * (2 / math.sqrt(12)) / math.sqrt(200)
    ints = parse_spec({"axes": {"b": {"random": "integers", "low": 1, "high": 3, "num": 300,
                                      "seed": 0}}}).axes["b"]
    assert set(ints) == {1, 2, 3}
    choice = parse_spec({"axes": {"m": {"random": "choice", "values": ["p", "q"], "num": 50,
                                        "seed": 1}}}).axes["m"]
    assert set(choice) == {"p", "q"}


@pytest.mark.parametrize(("data", "pieces"), [
    ({"seeds": 0}, ["'seeds'", "an integer in [1, 1000000]"]),
    ({"seeds": True}, ["'seeds'", "boolean", "an integer in [1, 1000000]"]),
    ({"chunk_size": 2.5}, ["'chunk_size'", "an integer >= 1"]),
    ({"colour": 1}, ["unknown sweep key 'colour'", "allowed keys: name, seeds, chunk_size"]),
    ({"base": 3}, ["'base'", "dictionary"]),
    ({"axes": {"x": []}}, ["'axes.x'", "at least 1 item"]),
    ({"axes": {"x": 3}}, ["axes.x must be a list"]),
    ({"axes": {"": [1]}}, ["'axes'", "invalid field name ''"]),
    ({"axes": {"x": {"start": 0, "stop": 1}}}, ["'axes.x'", "give exactly one of num and step"]),
    ({"axes": {"x": {"start": 0, "stop": 1, "num": 0}}},
     ["'axes.x.num'", "an integer in [1, 100000]"]),
    ({"axes": {"x": {"start": 0, "stop": 1, "num": 2, "colour": 1}}},
     ["unknown sweep key 'axes.x.colour'", "start, stop, num, step, log"]),
    ({"axes": {"x": {"start": 0, "stop": 1, "num": 3, "log": True}}},
     ["'axes.x'", "log ranges need start > 0"]),
    ({"axes": {"x": {"start": 1, "stop": 2, "num": 3, "log": 1}}},
     ["'axes.x.log'", "true or false"]),
    ({"axes": {"x": {"start": 1, "stop": 0, "step": 0.1}}}, ["'axes.x'", "stop >= start"]),
    ({"axes": {"x": {"start": 0, "stop": 1, "step": 0}}}, ["'axes.x.step'", "a number > 0"]),
    ({"axes": {"x": {"start": 0, "stop": 1e9, "step": 1}}}, ["'axes.x'", "more than 100000"]),
    ({"axes": {"x": {"random": "gauss", "num": 2, "seed": 0}}},
     ["'axes.x.random'", "one of 'uniform', 'loguniform', 'integers', 'choice'"]),
    ({"axes": {"x": {"random": "uniform", "low": 1, "high": 0, "num": 2, "seed": 0}}},
     ["'axes.x'", "need low < high"]),
    ({"axes": {"x": {"random": "loguniform", "low": 0, "high": 1, "num": 2, "seed": 0}}},
     ["'axes.x'", "low must be > 0"]),
    ({"axes": {"x": {"random": "integers", "low": 0.5, "high": 3, "num": 2, "seed": 0}}},
     ["'axes.x'", "integer low and high"]),
    ({"axes": {"x": {"random": "choice", "low": 0, "high": 1, "num": 2, "seed": 0}}},
     ["'axes.x'", "choice takes values"]),
    ({"axes": {"x": {"random": "uniform", "low": 0, "high": 1, "num": 2}}},
     ["'axes.x.seed'", "an integer >= 0"]),
    ({"axes": {"target": {"separation": [1, 2]}}}, ["quote dotted field names"]),
    ({"seeds": 1000, "axes": {"x": list(range(2000))}}, ["2000000 runs", "ceiling of 1000000"]),
])
def test_invalid_specs_name_the_field_and_range(data, pieces):
    with pytest.raises(ValueError) as err:
        parse_spec(data)
    message = str(err.value)
    assert "\n" not in message
    for piece in pieces:
        assert piece in message, message


def test_resolution_errors_name_the_configuration_and_field():
    spec = parse_spec({"axes": {"x": [1.0, 11.0]}})
    with pytest.raises(ValueError, match=r"configuration 1 \(x=11\.0\): x must lie in \[0, 10\]"):
        make_plan(spec, ToyRunner())
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['w'\]"):
        make_plan(parse_spec({"axes": {"w": [1.0]}}), ToyRunner())


def test_load_spec_reads_toml_and_reports_bad_files(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "n"\nseeds = 2\n[base]\ny = 2.0\n[axes]\n"x" = [0.5, 1.5]\n')
    spec = load_spec(path)
    assert spec.name == "n" and spec.base == {"y": 2.0} and spec.axes == {"x": [0.5, 1.5]}
    path.write_text("seeds = = 2")
    with pytest.raises(ValueError, match="is not valid TOML"):
        load_spec(path)
    with pytest.raises(ValueError, match="cannot read"):
        load_spec(tmp_path / "missing.toml")


def test_run_identity_depends_on_the_run_not_its_position():
    small = parse_spec({"seeds": 2, "axes": {"x": [1.0, 2.0]}}).runs(ToyRunner().resolve)
    large = parse_spec({"seeds": 3, "axes": {"x": [0.5, 2.0, 1.0]}}).runs(ToyRunner().resolve)
    ids = {(r.config["x"], r.seed_index): r.run_id for r in large}
    for r in small:
        assert ids[(r.config["x"], r.seed_index)] == r.run_id
    assert len({r.run_id for r in large}) == len(large)
    first = [np.random.default_rng(r.seed_sequence()).random() for r in large]
    assert len(set(first)) == len(large)


def test_chunks_hold_whole_configurations_of_one_group():
    spec = parse_spec({"seeds": 3, "axes": {"x": [1.0, 2.0, 3.0], "kind": ["a", "b"]}})
    plan = make_plan(spec, ToyRunner(), chunk_size=7)
    runs = spec.runs(ToyRunner().resolve)
    kinds = [r.config["kind"] for r in runs[::3]]
    assert sorted(len(c) for c in plan.chunks) == [3, 3, 6, 6]
    assert sorted(len(c) for c in plan.pack()) == [3, 3, 6, 6]
    assert sorted(len(c) for c in pack_chunks(plan.group_of, 3, 1)) == [3] * 6
    assert all(len({kinds[c] for c in chunk.configs}) == 1 for chunk in plan.chunks)
    ids = plan.run_ids()
    assert sorted(ids[c, s].decode() for chunk in plan.chunks for c, seeds in chunk.seeds()
                  for s in seeds) == sorted(r.run_id for r in runs)
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        pack_chunks(plan.group_of, 3, 0)


def test_pending_runs_pack_into_fewer_chunks():
    spec = parse_spec({"seeds": 3, "axes": {"x": [1.0, 2.0, 3.0, 4.0], "kind": ["a"]}})
    plan = make_plan(spec, ToyRunner(), chunk_size=4)
    pending = np.zeros((4, 3), dtype=bool)
    pending[0, 2] = pending[1, :] = pending[3, 1:] = True
    chunks = plan.pack(pending)
    assert [(list(c.configs), len(c)) for c in chunks] == [([0, 1], 4), ([3], 2)]
    assert [list(s) for _, s in chunks[0].seeds()] == [[2], [0, 1, 2]]


def test_planning_in_blocks_on_an_executor_gives_the_same_plan(monkeypatch):
    from forgetlab.sweep import plan as plan_module
    from sweep_toy import InlineExecutor

    spec = parse_spec({"seeds": 2, "axes": {"x": [0.5 * i for i in range(9)],
                                            "kind": ["b", "a", "c"]}})
    whole = make_plan(spec, ToyRunner(), chunk_size=5)
    monkeypatch.setattr(plan_module, "BLOCK", 4)

    class Reversed(InlineExecutor):
        def map_unordered(self, fn, items):
            return reversed(list(super().map_unordered(fn, items)))

    blocks = make_plan(spec, ToyRunner(), chunk_size=5, executor=Reversed())
    assert (blocks.config_ids == whole.config_ids).all()
    assert (blocks.group_of == whole.group_of).all()
    assert [g.key for g in blocks.groups] == ["b", "a", "c"]
    assert [list(c.configs) for c in blocks.chunks] == [list(c.configs) for c in whole.chunks]
    expected = [r.config_id for r in spec.runs(ToyRunner().resolve)[::2]]
    assert list(whole.config_ids.astype(str)) == expected
