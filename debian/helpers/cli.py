"""`nonstop [COMMAND]` as help2man runs it at build time, from the package being built.

``cli.py [COMMAND] --help`` prints that command's help with the program named ``nonstop``;
``cli.py --summary COMMAND`` prints the command's one-line summary (the man page's NAME).
"""

import sys

import click

from nonstop.cli import cli

if sys.argv[1:2] == ["--summary"]:
    command = cli.get_command(click.Context(cli), sys.argv[2])
    assert command is not None, sys.argv[2]
    print(command.get_short_help_str(limit=300).rstrip("."))
else:
    cli(sys.argv[1:], prog_name="nonstop")
