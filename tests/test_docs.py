"""The documentation runs: every command and code block of docs/ and README.md is checked.

Conventions (docs/index.md, "Checked examples"):

- ``$ forgetlab ...`` in a code block (fenced or indented) is run in-process; the lines after
  it, up to the next ``$`` line, are its expected output. By default they must appear in the
  output (whitespace-insensitive, ``...`` matches anything). A block marked ``numbers``
  compares only the numbers, in order, each at its shown precision. The exit code must be 2
  when the expected output has an ``error:`` line, else 0.
- ``forgetlab ...`` without ``$`` in a fenced shell block is parsed, not run: the command and
  its option names must exist, and each option must get its value. Synopsis lines (with
  ``[``, ``|`` or ``...``) are skipped.
- A ``python`` block is executed. A ``print(...)`` line whose comment starts with numbers is
  compared: the first printed values must round to those numbers.
- An HTML comment ``<!-- doc-check: ... -->`` right before a block sets how it is checked
  (several marks separated by ``;``): ``slow`` (run only under the ``slow`` marker; the
  default run parses its commands),
  ``skip REASON`` (never run; commands still parsed), ``numbers``, and ``file NAME`` (the
  block is written to NAME in the page's working folder). A comment of its own,
  ``<!-- doc-check: file NAME`` followed by lines and ``-->``, writes a file the page does not
  show; ``<!-- doc-check: run forgetlab ... -->`` runs a command that must exit 0 (``run-slow``:
  only under the ``slow`` marker).

Each page runs in its own temporary folder (with ``examples/`` linked in), its blocks in order.
"""

from __future__ import annotations

import builtins
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from forgetlab.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
MARK = re.compile(r"^\s*<!--\s*doc-check:\s*(.*?)\s*(-->)?\s*$")
FENCE = re.compile(r"^(\s*)```\s*([\w-]*)\s*$")
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])")
SHELL_LANGS = {"", "sh", "bash", "console"}


@dataclass
class Block:
    """A code block of a page, or a hidden fixture/command from an HTML comment."""

    line: int
    lang: str
    text: str
    marks: dict[str, str] = field(default_factory=dict)


def parse_page(path: Path) -> list[Block]:
    """The blocks of a markdown page in order, with the marks of the comments before them."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    marks: dict[str, str] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        mark, fence = MARK.match(line), FENCE.match(line)
        if mark:
            kind, _, arg = mark.group(1).partition(" ")
            if mark.group(2) is None:  # a multi-line comment: a hidden file
                end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "-->")
                assert kind == "file", f"{path.name}:{i + 1}: only 'file' spans lines"
                blocks.append(Block(i + 1, "file", "\n".join(lines[i + 1:end]) + "\n",
                                    {"file": arg.strip()}))
                i = end + 1
                continue
            if kind in ("run", "run-slow"):
                blocks.append(Block(i + 1, "run", arg, {"slow": ""} if kind == "run-slow" else {}))
            else:
                for item in mark.group(1).split(";"):
                    k, _, a = item.strip().partition(" ")
                    marks[k] = a
        elif fence:
            indent = len(fence.group(1))
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            body = "\n".join(x[indent:] for x in lines[i + 1:end]) + "\n"
            blocks.append(Block(i + 1, fence.group(2), body, marks))
            marks = {}
            i = end + 1
            continue
        elif line.startswith("    $ ") and (i == 0 or not lines[i - 1].strip()):
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            body = "\n".join(x[4:] for x in lines[i:end]).rstrip() + "\n"
            blocks.append(Block(i + 1, "console", body, marks))
            marks = {}
            i = end
            continue
        elif line.strip():
            marks = {}
        i += 1
    return blocks


def _commands(text: str) -> list[tuple[str, str]]:
    """``($ command, expected output)`` pairs of a console block."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], ""))
        elif out:
            out[-1] = (out[-1][0], out[-1][1] + line + "\n")
    return out


def _argv(command: str) -> list[str]:
    words = shlex.split(command, comments=True)
    assert words and words[0] == "forgetlab", f"not a forgetlab command: {command!r}"
    return words[1:]


def dry_parse(command: str) -> None:
    """Resolve the subcommands of ``command`` and parse its options without running it: an
    unknown command or option, or an option without its value, raises a click error."""
    args = _argv(command)
    cmd: click.Command = main
    ctx = click.Context(main, info_name="forgetlab")
    while isinstance(cmd, click.Group):
        parser = cmd.make_parser(ctx)
        _, rest, _ = parser.parse_args(args)
        assert rest, f"{command!r}: no subcommand"
        name, sub, args = cmd.resolve_command(ctx, rest)
        assert sub is not None, f"{command!r}: unknown command {name!r}"
        cmd, ctx = sub, click.Context(sub, info_name=name, parent=ctx)
    cmd.make_parser(ctx).parse_args(args)


def run_cli(command: str) -> tuple[int, str]:
    """Run a ``forgetlab`` command in-process: exit code and stdout + stderr."""
    result = CliRunner().invoke(main, _argv(command), terminal_width=100)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _pattern(expected: str) -> re.Pattern[str]:
    """The expected output as a pattern over whitespace-normalised text (``...``: anything)."""
    parts = " ".join(expected.split()).split("...")
    return re.compile(".*?".join(re.escape(p.strip()) for p in parts), re.DOTALL)


def _matches(shown: str, value: float) -> bool:
    """``value`` rounds to the number ``shown`` at its shown precision."""
    target = float(shown)
    mantissa = re.split(r"[eE]", shown)[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    scale = 10.0 ** (int(re.split(r"[eE]", shown)[1]) if "e" in shown.lower() else 0)
    return abs(value - target) <= 0.5 * 10.0 ** -decimals * scale * (1 + 1e-9) + 1e-300


def compare_numbers(expected: str, actual: str) -> None:
    """Every number of ``expected`` matches the next numbers of ``actual``, in order."""
    found = [float(x) for x in NUMBER.findall(actual)]
    k = 0
    for shown in NUMBER.findall(expected):
        while k < len(found) and not _matches(shown, found[k]):
            k += 1
        assert k < len(found), f"number {shown} not found (in order) in:\n{actual}"
        k += 1


def check_output(expected: str, code: int, output: str, numbers: bool, command: str) -> None:
    """The exit code and the output of one documented command against the page."""
    want = 2 if re.search(r"^error:", expected, re.MULTILINE) else 0
    assert code == want, f"{command!r}: exit code {code}, expected {want}:\n{output}"
    if not expected.strip():
        return
    if numbers:
        compare_numbers(expected, output)
    else:
        assert _pattern(expected).search(" ".join(output.split())), (
            f"{command!r}: the page shows\n{expected}\nthe command printed\n{output}")


def _comment_numbers(source_line: str) -> list[str]:
    comment = source_line.partition("#")[2].strip()
    lead = re.match(r"^(?:[-+]?[\d.]+(?:e[-+]?\d+)?(?:\s*\([^)]*\))?[,;\s]*)+", comment)
    return NUMBER.findall(lead.group(0)) if lead else []


def run_python(code: str, name: str) -> None:
    """Execute a page's python block; a print whose comment starts with numbers is compared."""
    lines = code.splitlines()
    printed: list[tuple[int, tuple[object, ...]]] = []

    def print_(*values: object, **kw: object) -> None:
        frame = sys._getframe(1)
        if frame.f_code.co_filename == name:
            printed.append((frame.f_lineno, values))
        builtins.print(*values, **kw)  # type: ignore[call-overload]

    exec(compile(code, name, "exec"), {"__name__": "__main__", "print": print_})
    for lineno, values in printed:
        shown = _comment_numbers(lines[lineno - 1])
        for s, v in zip(shown, values, strict=False):
            assert isinstance(v, int | float) and _matches(s, float(v)), (
                f"{name}:{lineno}: printed {values}, the page shows {shown}")


def _is_synopsis(line: str) -> bool:
    return any(c in line for c in "[|") or "..." in line


def check_page(path: Path, tmp: Path, slow: bool) -> int:
    """Check every block of ``path`` in ``tmp``; the number of blocks run.

    The page's files are written first, so an example may use a file the page shows later."""
    (tmp / "examples").symlink_to(ROOT / "examples")
    blocks = parse_page(path)
    for block in blocks:
        if "file" in block.marks:
            (tmp / block.marks["file"]).write_text(block.text, encoding="utf-8")
    ran = 0
    for block in blocks:
        where = f"{path.relative_to(ROOT)}:{block.line}"
        deferred = "skip" in block.marks or ("slow" in block.marks and not slow)
        if "file" in block.marks:
            continue
        if block.lang == "run" and deferred:
            dry_parse(block.text)
        elif block.lang == "run":
            code, output = run_cli(block.text)
            assert code == 0, f"{where}: {block.text!r} exited {code}:\n{output}"
            ran += 1
        elif block.lang in SHELL_LANGS:
            pairs = _commands(block.text)
            if pairs:
                for command, expected in pairs:
                    if deferred:
                        dry_parse(command)
                        continue
                    code, output = run_cli(command)
                    check_output(expected, code, output, "numbers" in block.marks,
                                 f"{where}: {command}")
                    ran += 1
                continue
            for line in block.text.splitlines():
                if line.startswith("forgetlab ") and not _is_synopsis(line):
                    dry_parse(line)
        elif block.lang == "python" and not deferred:
            run_python(block.text, where)
            ran += 1
    return ran


def _page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.fixture
def page_dir(tmp_path: Path):
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)


@pytest.mark.parametrize("path", PAGES, ids=_page_id)
def test_page(path: Path, page_dir: Path) -> None:
    check_page(path, page_dir, slow=False)


@pytest.mark.slow
@pytest.mark.parametrize("path", PAGES, ids=_page_id)
def test_page_slow(path: Path, page_dir: Path) -> None:
    check_page(path, page_dir, slow=True)


def test_cli_reference_lists_every_command() -> None:
    """docs/cli.md names every subcommand of ``forgetlab --help``."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    missing = [name for name in main.commands if f"`{name}`" not in text]
    assert not missing, f"docs/cli.md does not list {missing}"


def test_number_comparison_can_fail() -> None:
    """The comparison rules themselves: precision, order, wildcards, exit codes."""
    assert _matches("0.034", 0.0343) and not _matches("0.034", 0.0346)
    assert _matches("2.7e-05", 2.74e-5) and not _matches("2.7e-05", 2.8e-5)
    compare_numbers("a 1.0 b 2.50", "x 1.04 y 7 z 2.5")
    with pytest.raises(AssertionError):
        compare_numbers("2.50 1.0", "1.0 2.5")
    check_output("peak ... 4.2 MiB\n", 0, "peak memory:   4.2  MiB", False, "c")
    with pytest.raises(AssertionError):
        check_output("peak 4.3 MiB\n", 0, "peak 4.2 MiB", False, "c")
    with pytest.raises(AssertionError):
        check_output("error: x\n", 0, "error: x", False, "c")
    assert _comment_numbers("print(x, y)   # 0.300 (= alpha), 0.656") == ["0.300", "0.656"]
    assert _comment_numbers("print(x)  # 0.034 < 0.5") == ["0.034"]
    with pytest.raises(click.NoSuchOption):
        dry_parse("forgetlab theory --dimension 3")
    with pytest.raises(click.UsageError):
        dry_parse("forgetlab nosuchcommand")
