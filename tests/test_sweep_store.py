"""Result store: atomic chunks, resume, refusal of incompatible specs, full or unwritable disks."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from forgetlab.sweep import store as store_module
from forgetlab.sweep.driver import execute_chunk, run_sweep
from forgetlab.sweep.plan import ChunkTask, make_plan
from forgetlab.sweep.spec import parse_spec
from forgetlab.sweep.store import ResultStore, StoreError, load_configs, load_results, part_files
from sweep_toy import InlineExecutor, ToyRunner

SPEC = {"name": "toy", "seeds": 3, "axes": {"x": [0.0, 1.0, 2.0, 3.0], "kind": ["a", "b"]}}


def _store_serially(spec, directory, chunk_size=5, limit=None):
    """Run the sweep's chunks in this process, the first ``limit`` of them."""
    run_sweep(spec, directory, ToyRunner(), executor=InlineExecutor(limit), chunk_size=chunk_size,
              progress=False)
    return spec.runs(ToyRunner().resolve)


def _committed(spec, directory):
    """A store holding ``spec``'s plan and no runs, and the plan."""
    runner = ToyRunner()
    store = ResultStore(directory)
    store.open()
    configs = store.config_writer()
    plan = make_plan(spec, runner, on_block=lambda b: configs.write(b.start, b.config_ids,
                                                                     b.configs))
    store.commit(runner.name, spec.name, spec.seeds, spec.to_dict(), plan.config_ids, plan.sample)
    return store, plan


def _encoded(spec, plan, chunk):
    """One chunk run here: (chunk id, encoded rows, runs)."""
    return execute_chunk(ChunkTask(ToyRunner(), spec, chunk, plan.config_ids[chunk.configs]))


def test_roundtrip_one_row_per_run_in_spec_order(tmp_path):
    spec = parse_spec(SPEC)
    runs = _store_serially(spec, tmp_path)
    table = load_results(tmp_path)
    assert list(table["run_id"]) == [r.run_id for r in runs]
    assert list(table.columns[:6]) == ["run_id", "config_id", "seed_index", "x", "y", "kind"]
    expected = ToyRunner().run(runs)
    assert (table["value"].to_numpy() == expected["value"]).all()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]


def test_partial_store_resumes_to_the_same_table(tmp_path):
    spec = parse_spec(SPEC)
    _store_serially(spec, tmp_path / "full", chunk_size=4)
    _store_serially(spec, tmp_path / "part", chunk_size=4, limit=2)
    assert len(load_results(tmp_path / "part")) == 6
    (tmp_path / "part" / ".tmp-deadbeef.parquet").write_bytes(b"PAR1 truncated")
    _store_serially(spec, tmp_path / "part", chunk_size=3)
    pd.testing.assert_frame_equal(load_results(tmp_path / "part"),
                                  load_results(tmp_path / "full"), check_exact=True)
    assert not list((tmp_path / "part").glob(".tmp-*"))


def test_a_spec_may_extend_a_sweep_but_not_change_it(tmp_path):
    _store_serially(parse_spec(SPEC), tmp_path)
    more = parse_spec({**SPEC, "seeds": 4, "axes": {**SPEC["axes"], "x": [0.0, 1.0, 2.0, 3.0,
                                                                           4.0]}})
    _store_serially(more, tmp_path)
    _store_serially(more, tmp_path / "fresh")
    pd.testing.assert_frame_equal(load_results(tmp_path), load_results(tmp_path / "fresh"),
                                  check_exact=True)
    changed = parse_spec({**SPEC, "seeds": 4, "base": {"y": 2.0}, "axes": more.axes})
    with pytest.raises(ValueError, match=r"would mix incompatible results: 10 stored .* "
                                         r"y: stored 1\.0, spec 2\.0"):
        _store_serially(changed, tmp_path)
    with pytest.raises(ValueError, match="seeds 2 < stored 4"):
        _store_serially(parse_spec({**SPEC, "seeds": 2, "axes": more.axes}), tmp_path)
    assert len(load_results(tmp_path)) == 40


def test_second_writer_is_refused(tmp_path):
    with ResultStore(tmp_path) as first:
        first.open()
        with pytest.raises(ValueError, match="another sweep is writing"):
            ResultStore(tmp_path).open()


def test_load_results_rejects_a_directory_without_sweep(tmp_path):
    with pytest.raises(ValueError, match="holds no sweep"):
        load_results(tmp_path)


def test_unwritable_output_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the sweep directory"):
        run_sweep(parse_spec(SPEC), blocker / "out", ToyRunner(), progress=False)


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


@pytest.fixture
def tiny_disk(tmp_path):
    """A 96 KiB tmpfs when mounting is allowed, else None."""
    mount = tmp_path / "disk"
    ok = _mount_tmpfs(mount, "size=96k")
    yield mount if ok else None
    if ok:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def test_full_disk_keeps_the_store_readable(tiny_disk, tmp_path):
    if tiny_disk is None:
        pytest.skip("cannot mount a tmpfs here; test_enospc_on_write covers the same path")
    spec = parse_spec({**SPEC, "seeds": 400})
    with pytest.raises(StoreError, match="no space left on device.*intact"):
        run_sweep(spec, tiny_disk / "out", ToyRunner(n=4), chunk_size=800, workers=1,
                  progress=False)
    table = load_results(tiny_disk / "out")
    assert 0 < len(table) < spec.n_runs and len(table) % 800 == 0
    assert not table["run_id"].duplicated().any()
    assert not list((tiny_disk / "out").glob(".tmp-*"))


def test_enospc_on_write(tmp_path, monkeypatch):
    spec = parse_spec({**SPEC, "chunk_size": 6})
    store, plan = _committed(spec, tmp_path)
    with store:
        store.write_chunk(*_encoded(spec, plan, plan.chunks[0])[:2])

        def no_space(*args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(store_module.os, "fsync", no_space)
        with pytest.raises(StoreError, match="no space left on device"):
            store.write_chunk(*_encoded(spec, plan, plan.chunks[1])[:2])
    assert len(load_results(tmp_path)) == 6
    assert not list(tmp_path.glob(".tmp-*"))


def test_configurations_and_spec_are_stored_with_their_ids(tmp_path):
    spec = parse_spec(SPEC)
    runs = _store_serially(spec, tmp_path)
    configs = load_configs(tmp_path)
    assert list(configs["config_index"]) == list(range(spec.n_configs))
    expected = {r.config_id: r.config for r in runs}
    assert {cid: json.loads(text) for cid, text in zip(configs["config_id"], configs["config"],
                                                        strict=True)} == expected
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["spec"] == spec.to_dict() and manifest["seeds"] == 3


def test_a_refused_plan_leaves_no_directory(tmp_path):
    bad = parse_spec({"axes": {"x": [1.0, 11.0]}})
    with pytest.raises(ValueError, match="configuration 1"):
        run_sweep(bad, tmp_path / "new", ToyRunner(), executor=InlineExecutor(), progress=False)
    assert not (tmp_path / "new").exists()
    _store_serially(parse_spec(SPEC), tmp_path / "old")
    before = sorted(p.name for p in (tmp_path / "old").iterdir())
    with pytest.raises(ValueError, match="configuration 1"):
        run_sweep(bad, tmp_path / "old", ToyRunner(), executor=InlineExecutor(), progress=False)
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == before


def test_a_worker_that_resolves_differently_stops_the_sweep(tmp_path):
    class Drifting(ToyRunner):
        """Resolves y one higher after planning: a worker running other code."""

        calls = 0

        def resolve(self, config):
            self.calls += 1
            resolved = super().resolve(config)
            return {**resolved, "y": resolved["y"] + 1} if self.calls > 8 else resolved

    with pytest.raises(RuntimeError, match="resolves to .* when planned"):
        run_sweep(parse_spec(SPEC), tmp_path, Drifting(), executor=InlineExecutor(),
                  progress=False)
    assert not part_files(tmp_path)


def test_a_store_of_another_format_is_refused_with_the_way_out(tmp_path):
    _store_serially(parse_spec(SPEC), tmp_path)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "format": 1}))
    with pytest.raises(ValueError, match="format 1, expected 2 .* new directory"):
        load_results(tmp_path)
    with pytest.raises(ValueError, match="format 1, expected 2"):
        _store_serially(parse_spec(SPEC), tmp_path)
