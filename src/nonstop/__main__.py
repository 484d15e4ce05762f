"""Allow ``python -m nonstop``."""

from nonstop.cli import main

main()
