"""The ``forgetlab`` command line: a thin layer that parses, validates and calls the library.

Each command group lives in its own module of this package and is registered on :data:`main`.
Invalid input (a ``ValueError`` raised by validation anywhere in the library) becomes one line
on standard error naming the field and the allowed range, and exit code 2, never a traceback;
the exit codes of every command are listed in :mod:`forgetlab.cli._common`.
"""

from __future__ import annotations

import click

from forgetlab import __version__
from forgetlab.cli._common import handle_errors


class _Group(click.Group):
    """A click group whose errors end in one line and the shared exit codes."""

    invoke = handle_errors(click.Group.invoke)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="forgetlab")
def main() -> None:
    """forgetlab: quantify forgetting in post-training.

    Mass forgetting (the old mode's weight collapses) and old-component drift (the old mode
    moves), in an exact two-mode Gaussian mixture and in language models.
    """

from forgetlab.cli.reproduce import reproduce  # noqa: E402

main.add_command(reproduce)

from forgetlab.cli.simulate import simulate  # noqa: E402

main.add_command(simulate)

from forgetlab.cli.sweep import sweep  # noqa: E402

main.add_command(sweep)

from forgetlab.cli.theory import theory  # noqa: E402

main.add_command(theory)

from forgetlab.cli.lm import lm  # noqa: E402

main.add_command(lm)

from forgetlab.cli.continual import continual  # noqa: E402

main.add_command(continual)

from forgetlab.cli.plan import plan  # noqa: E402

main.add_command(plan)
