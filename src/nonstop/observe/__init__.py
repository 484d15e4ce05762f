"""What the cluster did and is doing: the event history, ordered notifications, Prometheus
metrics and a read-only status page (issue 14; docs/OBSERVE.md).

``events`` is the record and its renderings (pure), ``store`` the bounded crash-safe file the
records live in, ``recorder`` the one object the daemon calls (it turns what happens into
records, off the heartbeat path), ``notify`` runs the ``nonstop_notify`` programs, ``metrics``
renders the ``/metrics`` text and ``web`` serves it with the page and the JSON documents.
"""
