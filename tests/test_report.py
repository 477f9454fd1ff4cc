"""The claim result type, the HTML report and the ``forgetlab reproduce`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from forgetlab.claims import REGISTRY, Check, ClaimResult, Profile, claim_ids, get_profile, select
from forgetlab.claims.base import ClaimContext
from forgetlab.cli import main
from forgetlab.report import build as build_module
from forgetlab.report.build import build_report
from forgetlab.report.figures import render_claim_figures
from forgetlab.report.html import render_report
from reproduce_run import quick_run

IND = {"predicted_by": "closed form", "measured_by": "Monte Carlo", "independent": True}
CONS = {"predicted_by": "exact engine", "measured_by": "population run", "independent": False}


def test_check_pass_rules() -> None:
    assert Check("x", 1.0, 1.05, 0.1, "floating point", **IND).passed
    assert not Check("x", 1.0, 1.2, 0.1, "floating point", **IND).passed
    assert Check("b", 1.0, 0.3, 0.0, "quadrature error", kind="upper_bound", **IND).passed
    assert not Check("b", 1.0, 1.3, 0.1, "quadrature error", kind="upper_bound", **IND).passed
    assert Check("l", 1.0, 5.0, 0.0, "floating point", kind="lower_bound", **IND).passed
    assert not Check("n", 1.0, float("nan"), 1e9, "floating point", **IND).passed


def test_check_rejects_bad_fields() -> None:
    with pytest.raises(ValueError, match="tolerance_source"):
        Check("x", 1.0, 1.0, 0.1, "tuned until green", **IND)
    with pytest.raises(ValueError, match="tolerance"):
        Check("x", 1.0, 1.0, -1.0, "floating point", **IND)
    with pytest.raises(ValueError, match="predicted_by"):
        Check("x", 1.0, 1.0, 0.1, "floating point", predicted_by="hope",
              measured_by="Monte Carlo", independent=True)
    with pytest.raises(ValueError, match="algebraic identity"):
        Check("x", 1.0, 1.0, 0.1, "floating point", predicted_by="algebraic identity",
              measured_by="recorded run", independent=True)
    with pytest.raises(ValueError, match="consistency"):
        Check("x", 1.0, 1.0, 0.1, "floating point", predicted_by="exact engine",
              measured_by="exact engine", independent=True)
    with pytest.raises(ValueError, match="consistency"):  # any method on both sides
        Check("x", 1.0, 1.0, 0.1, "floating point", predicted_by="population run",
              measured_by="population run", independent=True)
    with pytest.raises(TypeError):
        Check("x", 1.0, 1.0, 0.1, "floating point")  # type: ignore[call-arg]  # no provenance


def test_claim_status_and_json_schema() -> None:
    res = ClaimResult("C0", "t", "s", parameters={"arr": np.arange(3), "x": np.float64(2.0)})
    assert res.status == "failed"  # no checks: nothing was shown
    res.check("a", 1.0, 1.0, 0.0, "floating point", **IND)
    assert res.status == "passed" and res.passed
    res.check("b", 0.0, np.inf, 1.0, "Monte Carlo standard error", **CONS)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["status"] == "failed" and d["passed"] is False
    assert d["independent_checks"] == 1 and d["independent_passed"] == 1
    assert d["checks"][1]["independent"] is False
    assert d["checks"][1]["predicted_by"] == "exact engine"
    assert d["parameters"] == {"arr": [0, 1, 2], "x": 2.0}
    assert d["measured"]["b"] == "inf"
    assert d["tolerance_source"] == ["floating point", "Monte Carlo standard error"]
    assert set(d) >= {"claim_id", "title", "statement", "checks", "notes", "figures", "runtime_s"}
    res.skipped = True
    assert res.status == "skipped" and not res.passed and res.ok
    assert res.to_dict()["passed"] is False  # a skipped claim never reads as passed


def test_profiles_and_selection() -> None:
    assert get_profile("full").pick(1, 2) == 2
    with pytest.raises(ValueError, match="profile must be one of quick, full"):
        get_profile("medium")
    assert [s.claim_id for s in select(["c2", "C4"])] == ["C2", "C4"]
    with pytest.raises(ValueError, match="C99"):
        select(["C99"])
    assert len(set(claim_ids())) == len(REGISTRY)


def test_seed_streams_depend_on_claim_not_order() -> None:
    a = ClaimContext(Profile("quick"), 7, "C2").rng().random(3)
    b = ClaimContext(Profile("quick"), 7, "C2").rng().random(3)
    c = ClaimContext(Profile("quick"), 7, "C3").rng().random(3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_render_report_embeds_figures(tmp_path: Path) -> None:
    res = ClaimResult("C2", "title <b>", "statement & more")
    fig = res.figure(2, title="t")
    fig.panels[0].series([0, 1, 2], [0, 1, 4], [0.1, 1.1, 3.9], [0.1, 0.1, 0.1])
    fig.panels[0].yscale = "log"
    fig.panels[1].heatmap([[1.0, 2.0]], [1.0, 2.0], ["a"], "value")
    paths = render_claim_figures(res, tmp_path / "figures")
    assert paths == ["figures/C2.png", "figures/C2.svg"]
    assert (tmp_path / paths[1]).read_text().lstrip().startswith("<?xml")
    res.figures += paths
    res.check("x", 1.0, 1.0, 0.0, "floating point", **IND)
    res.check("y", 1.0, 1.0, 0.0, "floating point", **CONS)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["figure_data"][0]["panels"][0]["items"][0]["theory"] == [0.0, 1.0, 4.0]
    page = render_report([d], tmp_path, {"profile": "quick", "seed": 0}, {"py": "3"})
    assert page.count("data:image/png;base64,") == 1
    assert "title &lt;b&gt;" in page and "statement &amp; more" in page
    assert 'data-claim="C2"' in page
    assert "<th>predicted by</th>" in page and "<th>independent</th>" in page
    assert "<td class='num'>1/1</td>" in page  # independent checks passed / independent checks
    assert "src=\"http" not in page and "src='http" not in page  # self-contained


def _failing(spec, profile, seed):  # noqa: ANN001, ANN202 - test double
    res = ClaimResult(spec.claim_id, spec.title, "s")
    res.check("value", 1.0, 2.0, 0.5, "floating point", **IND)
    return res


def _passing(spec, profile, seed):  # noqa: ANN001, ANN202 - test double
    res = ClaimResult(spec.claim_id, spec.title, "s")
    res.check("value", 1.0, 1.0, 0.5, "floating point", **IND)
    return res


def _slow_passing(spec, profile, seed):  # noqa: ANN001, ANN202 - test double
    import time

    time.sleep(2)
    return _passing(spec, profile, seed)


def _dies(spec, profile, seed):  # noqa: ANN001, ANN202 - test double: a killed worker
    import os

    os._exit(9)


def _skipped(spec, profile, seed):  # noqa: ANN001, ANN202 - test double
    res = ClaimResult(spec.claim_id, spec.title, "s", skipped=True)
    return res


def test_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setattr(build_module, "run_claim", _passing)
    ok = runner.invoke(main, ["reproduce", "--claims", "C2", "--out", str(tmp_path / "a")])
    assert ok.exit_code == 0, ok.output
    monkeypatch.setattr(build_module, "run_claim", _failing)
    bad = runner.invoke(main, ["reproduce", "--claims", "C2,C3", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 1
    assert json.loads((tmp_path / "b" / "claims.json").read_text())[1]["status"] == "failed"
    monkeypatch.setattr(build_module, "run_claim", _skipped)
    skip = runner.invoke(main, ["reproduce", "--claims", "C2", "--out", str(tmp_path / "d")])
    assert skip.exit_code == 0, skip.output  # skipped is not a failure ...
    written = json.loads((tmp_path / "d" / "claims.json").read_text())[0]
    assert written["status"] == "skipped" and written["passed"] is False  # ... nor a pass
    monkeypatch.setattr(build_module, "run_claim", _failing)
    allow = runner.invoke(main, ["reproduce", "--claims", "C2", "--allow-fail",
                                 "--out", str(tmp_path / "c")])
    assert allow.exit_code == 0 and (tmp_path / "c" / "report.html").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profile", "medium"], "profile must be one of quick, full"),
        (["--claims", "C42"], "claims must be among"),
        (["--out", "{file}/sub"], "--out is not writable"),
        (["--out", "{file}"], "--out must be a directory"),
        (["--out", "{foreign}"], "is not a forgetlab report"),
    ],
)
def test_bad_input_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "keep.txt").write_text("user data")
    args = [a.format(file=tmp_path / "file", foreign=tmp_path / "foreign") for a in args]
    result = CliRunner().invoke(main, ["reproduce", *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert (tmp_path / "foreign" / "keep.txt").read_text() == "user data"


def test_interrupted_run_leaves_old_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_module, "run_claim", _passing)
    out = tmp_path / "rep"
    build_report(out, claims=["C2"])
    before = (out / "claims.json").read_text()

    def interrupt(spec, result):  # noqa: ANN001, ANN202 - test double
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_report(out, claims=["C2", "C3"], on_done=interrupt)
    assert (out / "claims.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # no temp leftovers


def test_an_interrupt_while_drawing_stops_the_claim_processes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C between two results (while figures are drawn): the remaining claims' processes
    are stopped before build_report returns, not when the interpreter exits."""
    import multiprocessing

    monkeypatch.setattr(build_module, "run_claim", _slow_passing)

    def interrupt(spec, result):  # noqa: ANN001, ANN202 - test double
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # at the first result: the third claim is running
        build_report(tmp_path / "rep", claims=["C2", "C3", "C4"], on_done=interrupt, workers=2)
    assert multiprocessing.active_children() == []
    assert list(tmp_path.iterdir()) == []


def test_a_dead_claim_worker_is_one_line_and_exit_1(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_module, "run_claim", _dies)
    result = CliRunner().invoke(main, ["reproduce", "--claims", "C2,C3", "--workers", "2",
                                       "--out", str(tmp_path / "rep")])
    assert result.exit_code == 1 and "worker process died" in result.output
    assert "Traceback" not in result.output and list(tmp_path.iterdir()) == []


def test_workers_change_no_number(tmp_path: Path) -> None:
    """Each claim draws from its own stream, so claims run on 2 processes give the same
    report as in this process, in the order asked for."""
    for workers in (1, 2):  # LM is skipped in the quick profile: it finishes first
        build_report(tmp_path / str(workers), claims=["C1", "LM"], workers=workers)
    one, two = (json.loads((tmp_path / w / "claims.json").read_text()) for w in "12")
    for claims in (one, two):
        for c in claims:
            assert c.pop("runtime_s") > 0
    assert one[0]["checks"] and one[1]["status"] == "skipped"
    assert [c["claim_id"] for c in two] == ["C1", "LM"] and two == one  # as asked, not as finished
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        build_report(tmp_path / "x", claims=["C1"], workers=0)


@pytest.mark.quick_run
def test_quick_profile_writes_everything() -> None:
    run = quick_run()
    assert run.returncode == 0, run.stderr[-3000:]
    claims = run.claims()
    assert [c["claim_id"] for c in claims] == claim_ids()
    config = json.loads((run.out / "config.json").read_text())
    assert config["profile"] == "quick" and "numpy" in config["versions"]
    for c in claims:
        for rel in c["figures"]:
            assert (run.out / rel).stat().st_size > 0
        if c["status"] != "skipped":
            assert {p.rsplit(".", 1)[1] for p in c["figures"]} == {"png", "svg"}, c["claim_id"]
