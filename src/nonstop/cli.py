"""The ``nonstop`` command."""

from __future__ import annotations

import click

from nonstop import __version__


@click.group()
@click.version_option(__version__, prog_name="nonstop")
def cli() -> None:
    """nonstop: high availability for a service on two or more Linux nodes."""


def main() -> None:
    cli()
