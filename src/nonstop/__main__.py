"""Allow ``python -m nonstop``."""

from nonstop.quick import main

main()
