"""The progress bar: drawn on standard error on a terminal only, silent otherwise."""

from __future__ import annotations

import pytest

from forgetlab.progress import ProgressBar


def _run(**options: bool) -> None:
    with ProgressBar("simulating", 5, "steps", transient=False, **options) as bar:
        for done in range(1, 4):
            bar.update(done)
        bar.update(7, label="other", total=9)
        bar.print("a line above the bar")


def test_on_a_terminal_the_counters_are_drawn_on_stderr(monkeypatch, capsys) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    _run()
    out, err = capsys.readouterr()
    assert out == ""
    assert "simulating" in err and "3/5" in err and "steps" in err
    assert "other" in err and "7/9" in err and "a line above the bar" in err


@pytest.mark.parametrize("terminal", [True, False])
def test_disabled_or_not_a_terminal_draws_nothing_but_prints_lines(monkeypatch, capsys,
                                                                   terminal: bool) -> None:
    if terminal:
        monkeypatch.setenv("TTY_COMPATIBLE", "1")
        monkeypatch.setenv("TTY_INTERACTIVE", "1")
    else:
        monkeypatch.setenv("TTY_COMPATIBLE", "0")
    _run(enabled=not terminal)
    out, err = capsys.readouterr()
    assert out == ""
    assert "a line above the bar" in err and "3/5" not in err and "simulating" not in err


def test_advance_and_describe_move_the_first_counter(monkeypatch, capsys) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    with ProgressBar("claims", 4, "claims", transient=False) as bar:
        bar.describe("C1: definitions")
        bar.advance()
        bar.advance(2)
    err = capsys.readouterr().err
    assert "C1: definitions" in err and "3/4" in err
