"""nonstop.demo: the failover drill a newcomer runs (``nonstop demo``).

:mod:`~nonstop.demo.config` adapts the talk's files, :mod:`~nonstop.demo.cluster` builds the
two-node cluster in namespaces, :mod:`~nonstop.demo.drill` runs the rounds,
:mod:`~nonstop.demo.timeline` and :mod:`~nonstop.demo.render` turn what happened into what a
person reads, :mod:`~nonstop.demo.cli` is the click command.
"""
