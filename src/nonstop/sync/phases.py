"""The phases of a replication session and, for each role, the frames that may arrive in each
(state machine as data: :mod:`nonstop.sync.session` refuses any other frame as bad input)."""

from __future__ import annotations

import enum
from collections.abc import Mapping

from nonstop.sync.protocol import Kind


class Phase(enum.Enum):
    """Where a session stands; the tables below say which frames may arrive in each."""

    IDLE = "between requests"
    AWAIT_VERDICT = "waiting for the verdict"
    SENDING = "sending files"
    AWAIT_SIGNATURE = "waiting for a signature"
    AWAIT_LISTING = "waiting for a listing"
    AWAIT_FILES = "waiting for a file list"
    NEED_DUE = "about to say which files it needs"
    RECEIVING = "receiving files"
    AWAIT_BYE = "waiting for goodbye"
    VERDICT_DUE = "judging an offer"
    SIGNATURE_DUE = "sending a signature"
    AWAIT_COMMIT = "waiting for a commit"
    LISTING_DUE = "sending a listing"
    FILES_DUE = "sending a file list"
    AWAIT_NEED = "waiting for the files needed"
    BYE_DUE = "saying goodbye"
    CLOSED = "closed"


_ANY_TIME = frozenset({Kind.RESULTS})

# The pushing side.
CLIENT_RECEIVES: Mapping[Phase, frozenset[Kind]] = {
    Phase.IDLE: _ANY_TIME,
    Phase.AWAIT_VERDICT: _ANY_TIME | {Kind.VERDICT},
    Phase.SENDING: _ANY_TIME,
    Phase.AWAIT_SIGNATURE: _ANY_TIME | {Kind.SIG, Kind.SIGEND},
    Phase.AWAIT_LISTING: _ANY_TIME | {Kind.LISTING},
    Phase.AWAIT_FILES: frozenset({Kind.FILES}),
    Phase.NEED_DUE: frozenset(),
    Phase.RECEIVING: frozenset({Kind.DATA, Kind.EOF}),
    Phase.AWAIT_BYE: _ANY_TIME | {Kind.BYE},
    Phase.CLOSED: frozenset(),
}

# The receiving side. An OFFER while receiving a batch is the next batch, offered ahead
# (version 2; the session checks the version).
SERVER_RECEIVES: Mapping[Phase, frozenset[Kind]] = {
    Phase.IDLE: frozenset({Kind.OFFER, Kind.LIST, Kind.FETCH, Kind.BYE}),
    Phase.VERDICT_DUE: frozenset(),
    Phase.RECEIVING: frozenset({Kind.START, Kind.DATA, Kind.EOF, Kind.WHOLE, Kind.OFFER}),
    Phase.SIGNATURE_DUE: frozenset(),
    Phase.AWAIT_COMMIT: frozenset({Kind.COMMIT, Kind.OFFER}),
    Phase.LISTING_DUE: frozenset(),
    Phase.FILES_DUE: frozenset(),
    Phase.AWAIT_NEED: frozenset({Kind.NEED}),
    Phase.SENDING: frozenset(),
    Phase.BYE_DUE: frozenset(),
    Phase.CLOSED: frozenset(),
}
