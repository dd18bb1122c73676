"""`kloudctl completion SHELL`: print the shell completion script."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from kloudctl import console


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def command(shell: str) -> None:
    """Print the completion script (e.g. `eval "$(kloudctl completion bash)"`)."""
    from kloudctl.cli import cli

    completion = get_completion_class(shell)
    assert completion is not None
    console.text(completion(cli, {}, "kloudctl", "_KLOUDCTL_COMPLETE").source() + "\n")
