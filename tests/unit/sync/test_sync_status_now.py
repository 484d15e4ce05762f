"""`nonstop status` on a standby shows its dirty count as it is when asked.

A standby pushes nothing, so no push updates its count: it was read in the background at each
ask and shown at the next one. In a user trial the first `nonstop status` after a healed split
brain said "dirty 1 ... changed here, never sent" of a file the keeper's force-sync had
already settled (the `--json` asked a moment later said 0).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sync_harness import replicating

from nonstop.daemon_api import ApiWiring
from nonstop.quick import render_sync
from nonstop.sync.replicator import Replicator


class _Api(ApiWiring):
    """The daemon's control API with only its replication: the rest of the document is the
    daemon's, not this test's."""

    def __init__(self, replicator: Replicator) -> None:
        self.replicator = self.sync = replicator

    def status(self) -> dict[str, Any]:
        return {"sync": self.sync.status()}


async def _sync_status(api: _Api) -> dict[str, Any]:
    reply = await api._api({"cmd": "status"})
    assert reply["ok"]
    sync: dict[str, Any] = reply["status"]["sync"]
    return sync


async def test_a_standby_s_status_counts_what_is_dirty_when_asked(tmp_path: Path) -> None:
    n1, n2, r1, r2 = await replicating(tmp_path)
    api = _Api(r1)
    try:
        # The dialplan as replicated before the split brain, then vpbx1-1's edit while it was
        # cut off (it lost the group at the heal).
        n2.write("/etc/asterisk/extensions.conf", "before the split")
        assert (await r2.force_sync(["/etc/asterisk"])).problems == []
        assert (await _sync_status(api))["dirty"] == 0
        n1.write("/etc/asterisk/extensions.conf", "edited on vpbx1-1")
        await asyncio.to_thread(n1.node.check, [("/etc/asterisk/extensions.conf", False)])
        unsent = len(n1.node.db.dirty())
        assert unsent >= 1
        sync = await _sync_status(api)
        assert sync["dirty"] == unsent  # the first ask says it, not the next one
        assert "changed here, never sent" in "\n".join(render_sync(sync))
        # The keeper's force-sync replaces the edit (kept in vpbx1-1's backup directory).
        n2.write("/etc/asterisk/extensions.conf", "the keeper's dialplan")
        assert (await r2.force_sync(["/etc/asterisk"])).problems == []
        assert n1.path("/etc/asterisk/extensions.conf").read_text() == "the keeper's dialplan"
        sync = await _sync_status(api)
        assert sync["dirty"] == 0, n1.node.db.dirty()  # at once, not at the next ask
        assert "never sent" not in "\n".join(render_sync(sync))
    finally:
        for r in (r1, r2):
            await r.stop()
        n1.node.close()
        n2.node.close()
