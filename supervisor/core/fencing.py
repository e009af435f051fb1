"""Fencing: DRBD's outdate-peer, carried by the heartbeat links.

With ``disk { fencing resource-only; }`` and ``handlers { fence-peer "twinbeat fence-peer"; }``
a DRBD 8.4 Primary that loses its replication connection runs the handler, which asks this
daemon (FenceRequested). While the peer is alive (heartbeats still flow, e.g. over the
serial cable) the request is published in every beat (``o``); the peer runs
``drbdadm outdate`` once per request id (OutdateReplica -> OutdateResult) and publishes the
result (``oa``) until the request disappears from our beats. The handler's exit code tells
DRBD what happened to the peer's disk. DRBD 8.4 user's guide, "The peer fencing interface"
(table "fence-peer handler exit codes"), and drbd-utils' scripts/outdate-peer.sh:

  3  the peer's disk was already Inconsistent
  4  the peer's disk was set to Outdated (or was Outdated to begin with)
  5  the peer could not be reached (DRBD, when its own disk is UpToDate, assumes the peer
     dead and marks it Outdated in its own view)
  6  the peer refused to be outdated because it is Primary (DRBD then outdates the disk of
     the node that ran the handler)
  7  the peer node was fenced (STONITH): never returned here, there is no fencing device

Any other code is "fence-peer helper broken" to DRBD. A failed ``drbdadm outdate`` on a
live peer is reported as 5, the nearest documented meaning, with a warning: the peer's
replica may then still be UpToDate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supervisor.core.actions import FenceAnswer, Log, OutdateReplica
from supervisor.core.events import OutdateResult
from supervisor.core.state import (
    EPS,
    CoreState,
    FenceIn,
    FenceOut,
    FenceOutcome,
    FenceState,
    Out,
    evolve,
    fmt,
)
from supervisor.core.states import NodeStatus, PeerStatus
from supervisor.names import DRBD_RESOURCE as _RESOURCE_RE

if TYPE_CHECKING:
    from supervisor.config import Config

#: the fence-peer exit code for each result of ``drbdadm outdate`` on the peer
OUTDATE_EXIT_CODES: dict[str, int] = {
    "inconsistent": 3,
    "outdated": 4,
    "failed": 5,
    "primary": 6,
}
FENCE_UNREACHABLE = 5
#: a fence request waits at least this long for the peer's answer (or 2 x deadtime). The
#: peer's half is `drbdadm outdate`, which DRBD refuses while the peer still believes it is
#: Connected: it notices the broken link by its own ping (ping-int, 10 s by default), so the
#: peer is given half of this, 15 s, to get there (seen in the QEMU pair: a cut crossover
#: cable is noticed by the two nodes several seconds apart).
FENCE_MIN_TIMEOUT = 30.0


def fence_timeout(config: Config) -> float:
    """How long a fence request waits for the live peer's answer before exit code 5."""
    return max(2 * config.timing.deadtime, FENCE_MIN_TIMEOUT)


def requests(s: CoreState) -> dict[str, int]:
    """Our open requests, as published (``o``)."""
    return {r: f.wire_id for r, f in s.fence.out.items()}


def answers(s: CoreState) -> dict[str, tuple[int, str]]:
    """Our answers, published while the peer's latest beat still asks that question."""
    beat = s.peer_state.beat
    if not s.fence.in_:
        return {}
    asked = beat.outdate if beat is not None else {}
    return {
        r: (f.wire_id, f.result)
        for r, f in s.fence.in_.items()
        if f.result is not None and asked.get(r) == f.wire_id
    }


def _done(fence: FenceState, waiters: tuple[int, ...], outcome: FenceOutcome, out: Out, *,
          warn: bool) -> FenceState:
    """Answer every waiting handler with ``outcome`` and remember it for the status."""
    for request_id in waiters:
        out.actions.append(FenceAnswer(request_id, outcome.code, outcome.message))
    if warn:
        out.warn(outcome.message)
    else:
        out.reason(outcome.message)
    return evolve(fence, last=outcome)


def on_request(s: CoreState, resource: str, request_id: int, now: float,
               out: Out) -> CoreState:
    what = f"fence-peer for DRBD resource {resource}"
    fence = s.fence
    if not _RESOURCE_RE.match(resource):
        message = f"fence-peer refused: {resource!r} is not a DRBD resource name; exit 5"
        outcome = FenceOutcome(resource, FENCE_UNREACHABLE, message, now)
        return evolve(s, fence=_done(fence, (request_id,), outcome, out, warn=True))
    pending = fence.out.get(resource)
    if pending is not None:
        waiting = evolve(pending, waiters=(*pending.waiters, request_id))
        out.reason(f"{what}: already asking {s.peer} (request {pending.wire_id}); this "
                   "handler waits for the same answer")
        return evolve(s, fence=evolve(fence, out={**fence.out, resource: waiting}))
    if s.peer_status is not PeerStatus.ALIVE:
        why = (s.peer_state.dead_reason if s.peer_status is PeerStatus.DEAD
               else f"not heard since {s.me} started")
        message = f"{what}: peer {s.peer} is unreachable ({why}); exit 5 (peer unreachable)"
        outcome = FenceOutcome(resource, FENCE_UNREACHABLE, message, now)
        return evolve(s, fence=_done(fence, (request_id,), outcome, out, warn=True))
    counter = fence.counter + 1
    wire_id = (s.generation << 20) | (counter & 0xFFFFF)
    timeout = fence_timeout(s.config)
    request = FenceOut(resource, wire_id, (request_id,), now, now + timeout)
    out.reason(f"{what}: the replication link is down but {s.peer} is alive; asking it over "
               f"the heartbeat links to outdate its replica (request {wire_id}, waiting up to "
               f"{fmt(timeout)})")
    return evolve(s, fence=evolve(fence, counter=counter,
                                  out={**fence.out, resource: request}))


def on_outdate_result(s: CoreState, r: OutdateResult, out: Out) -> CoreState:
    cur = s.fence.in_.get(r.resource)
    if cur is None or cur.wire_id != r.request_id or cur.result is not None:
        out.actions.append(Log("warning", f"ignoring a stale outdate result for DRBD resource "
                                          f"{r.resource} (request {r.request_id})"))
        return s
    result = r.result if r.result in OUTDATE_EXIT_CODES else "failed"
    answered = evolve(cur, result=result, detail=r.detail)
    text = {
        "outdated": "is Outdated now",
        "inconsistent": "is Inconsistent or Diskless already",
        "primary": "was not outdated: DRBD is Primary here",
        "failed": "could not be outdated",
    }[result]
    detail = f" ({r.detail})" if r.detail else ""
    message = (f"the replica of DRBD resource {r.resource} on {s.me} {text}{detail}; "
               f"answering {s.peer}'s fence request {r.request_id}")
    if result in ("outdated", "inconsistent"):
        out.reason(message)
    else:
        out.warn(message)
    return evolve(s, fence=evolve(s.fence, in_={**s.fence.in_, r.resource: answered}))


def update(s: CoreState, now: float, out: Out) -> CoreState:
    """Answer, give up or keep our requests; start one outdate per new request of the peer."""
    beat = s.peer_state.beat if s.peer_status is PeerStatus.ALIVE else None
    fence = s.fence
    if not fence.out and (beat is None or not beat.outdate):
        return s
    open_requests = dict(fence.out)
    for resource, req in fence.out.items():
        what = f"fence-peer for DRBD resource {resource}"
        answer = beat.outdate_answers.get(resource) if beat is not None else None
        given_up = ""
        if answer is not None and answer[0] == req.wire_id:
            result = answer[1]
            code = OUTDATE_EXIT_CODES[result]
            text = {
                "outdated": f"{s.peer} outdated its replica; exit 4 (peer Outdated)",
                "inconsistent": f"{s.peer}'s replica is Inconsistent already; exit 3",
                "primary": f"{s.peer} refused: it is Primary; exit 6 (DRBD outdates this "
                           "node's disk instead)",
                "failed": f"{s.peer} could not outdate its replica; exit 5 (treated as "
                          "unreachable: its replica may still be UpToDate)",
            }[result]
            del open_requests[resource]
            fence = _done(fence, req.waiters, FenceOutcome(resource, code, f"{what}: {text}",
                                                           now),
                          out, warn=result in ("failed", "primary"))
        elif s.peer_status is not PeerStatus.ALIVE:
            given_up = (f"{s.peer} became unreachable before answering "
                        f"({s.peer_state.dead_reason}); exit 5 (peer unreachable)")
        elif s.status is NodeStatus.LEAVING:
            given_up = f"{s.me} is shutting down before {s.peer} answered; exit 5"
        elif now >= req.deadline - EPS:
            given_up = (f"no answer from {s.peer} within {fmt(req.deadline - req.since)} "
                        "although it is alive; exit 5 (peer unreachable): its replica may not "
                        "be outdated")
        if given_up:
            del open_requests[resource]
            outcome = FenceOutcome(resource, FENCE_UNREACHABLE, f"{what}: {given_up}", now)
            fence = _done(fence, req.waiters, outcome, out, warn=True)
    if len(open_requests) != len(fence.out):
        fence = evolve(fence, out=open_requests)
    # The peer's requests: one drbdadm outdate per request id, never two.
    if beat is not None and beat.outdate:
        incoming = dict(fence.in_)
        for resource, wire_id in sorted(beat.outdate.items()):
            cur = incoming.get(resource)
            if cur is not None and cur.wire_id == wire_id:
                continue
            if not _RESOURCE_RE.match(resource):
                incoming[resource] = FenceIn(resource, wire_id, now, "failed",
                                             "not a DRBD resource name")
                out.warn(f"{s.peer} asks {s.me} to outdate {resource!r}, which is not a DRBD "
                         "resource name: answering that it failed")
                continue
            incoming[resource] = FenceIn(resource, wire_id, now)
            out.actions.append(OutdateReplica(resource, wire_id, fence_timeout(s.config) / 2))
            out.reason(f"{s.peer} lost its replication link for DRBD resource {resource} and "
                       f"asks {s.me} to outdate its replica (fence request {wire_id}): running "
                       "drbdadm outdate")
        if incoming != fence.in_:
            fence = evolve(fence, in_=incoming)
    return s if fence is s.fence else evolve(s, fence=fence)


def deadlines(s: CoreState) -> list[float]:
    return [f.deadline for f in s.fence.out.values()]
