"""The one place where the core's exceptions become messages and exit codes.

0 ok, 1 failed, 2 bad input, 3 partial. No traceback unless KLOUDCTL_DEBUG=1, and even
then without local variables (they may hold secrets).
"""

from __future__ import annotations

import os
import sys
import traceback

import click

from kloudctl import console
from kloudctl.errors import InputError, KloudError


def run_with_boundary(command: click.Command) -> None:
    debug = os.environ.get("KLOUDCTL_DEBUG") == "1"
    try:
        command.main(standalone_mode=False)
    except click.exceptions.Abort:
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
    except KloudError as exc:
        if debug:
            traceback.print_exc(limit=None)
        if isinstance(exc, InputError) and len(exc.problems) > 1:
            console.error(f"{len(exc.problems)} problems found:")
            for problem in exc.problems:
                console.info(f"  {problem}")
        else:
            console.error(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console.error("interrupted")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:  # a bug: say so without leaking locals
        if debug:
            traceback.print_exc()
        console.error(
            f"internal error: {type(exc).__name__}: {exc} (set KLOUDCTL_DEBUG=1 for a traceback)"
        )
        sys.exit(1)
    sys.exit(0)
