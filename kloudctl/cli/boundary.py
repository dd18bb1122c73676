"""The one place where the core's exceptions become messages and exit codes.

0 ok, 1 failed, 2 bad input, 3 partial. No traceback unless KLOUDCTL_DEBUG=1, and even
then without local variables (they may hold secrets).

Only `KloudError` (and click's own errors, an interruption, a broken pipe, an error of the
operating system) has a message of its own here: the core converts every other error at
its edges (a library's, pydantic's), so anything else reaching this point is a bug and is
reported as an internal error.
"""

from __future__ import annotations

import os
import sys

import click

from kloudctl import console


def run_with_boundary(command: click.Command, args: list[str] | None = None) -> None:
    """Run `command` (on `args`, default sys.argv) and exit with kloudctl's codes."""
    debug = os.environ.get("KLOUDCTL_DEBUG") == "1"
    try:
        command.main(args=args, standalone_mode=False)
    except click.exceptions.Abort:
        # Ctrl-C or end of input at one of click's own prompts. A declined confirmation
        # is not this: `options.confirmed` returns False and the command exits 0.
        console.error("interrupted")
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        # click's own usage errors are input errors: exit 2 like every other.
        exc.show()
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(1)
    except (Exception, KeyboardInterrupt) as exc:
        sys.exit(console.failure(exc, debug=debug))
    sys.exit(0)
