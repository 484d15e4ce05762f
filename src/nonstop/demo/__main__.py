"""Allow ``python3 -m nonstop.demo``."""

from nonstop.demo.cli import main

main()
