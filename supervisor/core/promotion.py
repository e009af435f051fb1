"""DRBD promotion readiness: a pure state machine (no I/O, no clock).

One module on purpose (about 500 lines; the rules written out below are ~25 of them): one
machine, read in one place. Its inputs (the replica snapshot, the peer's liveness, the
events), its actions and its transitions refer to each other's fields; split, the rules and
the code that applies them would sit in different files.

When the core starts a group that holds ``drbddisk::RES``, the drbddisk agent does not
decide on its own when the local replica may become Primary: it builds a ``Promotion``
with :func:`begin`, carries out the one action the machine returns, and feeds back what
happened (:func:`feed`) until the machine says ``Promoted`` or ``Refuse``. Every wait and
every refusal is a sentence. The inputs are events:

* ``ReplicaChanged``: the resource as DRBD shows it (built from the events2 monitor's
  ``ReplicaView``, or from ``drbdadm role/dstate/cstate`` when the monitor is not running);
* ``PeerChanged``: what the heartbeat core knows of the peer: declared dead (silent on every
  heartbeat link for deadtime), or heard on some links;
* ``CommandDone``: the outcome of an action the agent carried out;
* ``TimePassed``: a ``Wait`` reached its deadline (or the agent woke up for another reason);
* ``Observed``: the first two read at the same moment (what the agent feeds on waking up).

The rules, in order:

1. Already Primary: done (after listening for the peer again if this machine dropped it).
2. The peer is declared dead on every heartbeat link and DRBD still has a connection to it
   (Connected, or any sync state): drop it at once (``drbdadm disconnect --force``) instead
   of waiting for DRBD's own ping (ping-int, 10 s by default) to notice the dead peer. Never
   while any heartbeat link still hears the peer: a live peer is asked through the heartbeat
   protocol, and its DRBD demotes when it releases the group. After promotion the resource
   is set listening again (``drbdadm connect``) so that the returning node resynchronises.
   The promotion of a disconnected replica runs the fence-peer handler, which answers
   "peer unreachable" for a dead peer: DRBD then marks the peer Outdated in its own view.
3. DRBD shows the peer Primary (it has not seen it demote yet): wait up to ``peer_wait``,
   then refuse (DRBD 8.4 allows one Primary).
4. A new pair (both replicas Inconsistent, connected, no resync): this node becomes the
   source of the initial full sync (``primary --force``, once; the sync target waits).
   While the peer's DRBD has not connected yet, wait up to ``connect_wait`` to find out.
5. The local disk is UpToDate: promote (``promotion_verdict`` has the last word).
6. A resync towards this node is running, or the connection to a live peer is being made:
   wait up to ``sync_wait`` for the disk to become UpToDate, then refuse with the reason.
   A peer declared dead cannot finish a resync: refuse at once.
7. Anything else: refuse with the verdict's reason (an administrator can force Outdated,
   Inconsistent or Consistent data; the peer Primary or no local disk is never promoted).

A command that fails ends the machine with a refusal that carries the command's stderr: the
group then fails and its stop demotes the resource, so nothing is left half-promoted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from supervisor.core.replica import SYNC_SOURCE, SYNC_TARGET, promotion_verdict

if TYPE_CHECKING:
    from supervisor.core.replica import ReplicaView

EPS = 1e-6

#: Connection states of DRBD 8.4 (``drbdadm cstate``) mapped to events2's words: the
#: connection, and the replication state when a resync is running.
_CSTATE_CONNECTION = {
    "WFConnection": "Connecting",
    "WFReportParams": "Connecting",
    "Unconnected": "Connecting",
    "Timeout": "Connecting",
    "BrokenPipe": "Connecting",
    "NetworkFailure": "Connecting",
    "ProtocolError": "Connecting",
    "TearDown": "Disconnecting",
    "Disconnecting": "Disconnecting",
}
#: Connection states with no live connection to the peer.
UNCONNECTED = frozenset({"StandAlone", "Connecting", "Disconnecting", "Unconfigured",
                         "Unknown"})


def _fmt(seconds: float) -> str:
    return f"{seconds:.1f} s"


@dataclass(frozen=True)
class ReplicaSnapshot:
    """One DRBD resource as it is now (the worst volume for the disk states)."""

    role: str = "Unknown"
    peer_role: str = "Unknown"
    connection: str = "Unknown"  # events2 words: Connected, Connecting, StandAlone, ...
    disk: str = "DUnknown"
    peer_disk: str = "DUnknown"
    replication: str = "Off"  # Established, SyncTarget, SyncSource, ... (Off: none)
    split_brain: bool = False
    done: float | None = None  # resync progress in percent, when known
    eta_s: float | None = None

    @property
    def connected(self) -> bool:
        return self.connection not in UNCONNECTED

    @property
    def sync_target(self) -> bool:
        return self.replication in SYNC_TARGET

    @property
    def syncing(self) -> bool:
        return self.replication in SYNC_TARGET or self.replication in SYNC_SOURCE

    def describe(self) -> str:
        text = (f"{self.role}/{self.peer_role}, {self.connection}, disks "
                f"{self.disk}/{self.peer_disk}")
        if self.syncing:
            text += f", {self.replication}"
        return text

    @classmethod
    def from_view(cls, view: ReplicaView) -> ReplicaSnapshot:
        return cls(role=view.role, peer_role=view.peer_role, connection=view.connection,
                   disk=view.disk, peer_disk=view.peer_disk, replication=view.replication,
                   split_brain=view.split_brain, done=view.done, eta_s=view.eta_s())

    @classmethod
    def from_drbdadm(cls, role: str, dstate: str, cstate: str, *,
                     split_brain: bool = False) -> ReplicaSnapshot:
        """From the output of ``drbdadm role``, ``dstate`` and ``cstate`` (DRBD 8.4: one
        ``local/peer`` line per volume; the worst volume decides)."""
        def parts(text: str) -> tuple[list[str], list[str]]:
            local, peer = [], []
            for line in text.splitlines():
                if line.strip():
                    a, _, b = line.partition("/")
                    local.append(a.strip())
                    if b:
                        peer.append(b.strip())
            return local, peer

        roles, peer_roles = parts(role)
        disks, peer_disks = parts(dstate)
        c = cstate.strip().splitlines()[0].strip() if cstate.strip() else "Unknown"
        if c in SYNC_TARGET or c in SYNC_SOURCE:
            connection, replication = "Connected", c
        elif c == "Connected":
            connection, replication = "Connected", "Established"
        else:
            connection, replication = _CSTATE_CONNECTION.get(c, c), "Off"
        return cls(
            role=("Primary" if roles and all(r == "Primary" for r in roles)
                  else (roles[0] if roles else "Unknown")),
            peer_role="Primary" if "Primary" in peer_roles else (
                peer_roles[0] if peer_roles else "Unknown"),
            connection=connection,
            disk=next((d for d in disks if d != "UpToDate"), "UpToDate") if disks
            else "DUnknown",
            peer_disk=next((d for d in peer_disks if d != "UpToDate"), "UpToDate")
            if peer_disks else "DUnknown",
            replication=replication,
            split_brain=split_brain,
        )


@dataclass(frozen=True)
class PeerLiveness:
    """What the heartbeat core knows of the peer. ``dead``: declared dead (silent on every
    heartbeat link for deadtime); ``hearing``: the links that still deliver its beats."""

    dead: bool
    hearing: tuple[str, ...]
    reason: str

    def describe(self) -> str:
        if self.hearing:
            return f"the peer is heard on {', '.join(self.hearing)}"
        return self.reason


UNKNOWN_PEER = PeerLiveness(False, (), "the heartbeat core's view of the peer is not known")


def peer_liveness(peer: str, declared_dead: bool, dead_reason: str,
                  hearing: tuple[str, ...]) -> PeerLiveness:
    """The core's view, as the machine needs it: dead only when declared dead AND no link
    delivers its beats (one frame makes it alive again)."""
    if hearing:
        return PeerLiveness(False, hearing, f"peer {peer} is heard on {', '.join(hearing)}")
    if declared_dead:
        return PeerLiveness(True, (), dead_reason or f"peer {peer} is declared dead")
    return PeerLiveness(False, (), f"peer {peer} is not heard on any link but not declared "
                                   "dead yet")


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaChanged:
    replica: ReplicaSnapshot


@dataclass(frozen=True)
class PeerChanged:
    peer: PeerLiveness


@dataclass(frozen=True)
class CommandDone:
    """The outcome of a Disconnect, Promote or Connect action; ``detail`` is the failed
    command and its stderr."""

    command: str  # disconnect | promote | connect
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class TimePassed:
    pass


@dataclass(frozen=True)
class Observed:
    """Both inputs read at the same moment (what the agent feeds after each wake-up)."""

    replica: ReplicaSnapshot
    peer: PeerLiveness


PromotionEvent = ReplicaChanged | PeerChanged | Observed | CommandDone | TimePassed


# -- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Disconnect:
    """``drbdadm disconnect --force RES``: drop the connection to a dead peer at once."""

    reason: str


@dataclass(frozen=True)
class Promote:
    """``drbdadm primary RES``; ``force``: ``primary --force`` (an administrator's override,
    or ``bootstrap``: the initial full sync of a new pair starts from here)."""

    reason: str
    force: bool = False
    bootstrap: bool = False
    risk: str = ""


@dataclass(frozen=True)
class Connect:
    """``drbdadm connect RES``: listen for the peer again after a forced disconnect."""

    reason: str


@dataclass(frozen=True)
class Wait:
    """Nothing to do until ``until`` or the next event; ``kind`` names what is awaited
    (peer-primary | connect | resync) so that the agent logs each new wait once."""

    until: float
    kind: str
    reason: str


@dataclass(frozen=True)
class Refuse:
    reason: str


@dataclass(frozen=True)
class Promoted:
    reason: str


PromotionAction = Disconnect | Promote | Connect | Wait | Refuse | Promoted


# -- the machine -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """How long each wait may last, in seconds from the start of the promotion."""

    connect_wait: float = 15.0
    sync_wait: float = 40.0
    peer_wait: float = 20.0


class Phase(StrEnum):
    JUDGING = "judging"
    DISCONNECTING = "disconnecting"
    PROMOTING = "promoting"
    CONNECTING = "connecting"
    DONE = "done"
    REFUSED = "refused"


#: The phases each phase may go to (checked by ``_to``).
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.JUDGING: frozenset({Phase.JUDGING, Phase.DISCONNECTING, Phase.PROMOTING,
                              Phase.CONNECTING, Phase.DONE, Phase.REFUSED}),
    Phase.DISCONNECTING: frozenset({Phase.JUDGING, Phase.REFUSED}),
    Phase.PROMOTING: frozenset({Phase.CONNECTING, Phase.DONE, Phase.REFUSED}),
    Phase.CONNECTING: frozenset({Phase.DONE, Phase.REFUSED}),
    Phase.DONE: frozenset(),
    Phase.REFUSED: frozenset(),
}


@dataclass(frozen=True)
class Promotion:
    resource: str
    started_at: float
    limits: Limits
    force: bool
    replica: ReplicaSnapshot
    peer: PeerLiveness
    phase: Phase = Phase.JUDGING
    #: this machine dropped the connection (it is StandAlone until Connect)
    disconnected: bool = False
    #: the promotion command succeeded (the role is Primary whatever a late snapshot says)
    promoted: bool = False
    outcome: str = ""
    #: a refusal that waits for the Connect that undoes this machine's disconnect
    refusal: str = ""

    def _to(self, phase: Phase, **changes: object) -> Promotion:
        if phase not in TRANSITIONS[self.phase]:
            raise ValueError(f"promotion of {self.resource}: {self.phase} -> {phase}")
        return replace(self, phase=phase, **changes)  # type: ignore[arg-type]

    @property
    def view(self) -> ReplicaSnapshot:
        """The replica as this machine must judge it: after its own forced disconnect DRBD is
        StandAlone whatever an older events2 line said."""
        r = self.replica
        if self.disconnected:
            r = replace(r, connection="StandAlone", peer_role="Unknown", peer_disk="DUnknown",
                        replication="Off")
        if self.promoted:
            r = replace(r, role="Primary")
        return r


def begin(resource: str, now: float, *, replica: ReplicaSnapshot, peer: PeerLiveness,
          limits: Limits = Limits(), force: bool = False,
          ) -> tuple[Promotion, PromotionAction]:
    m = Promotion(resource, now, limits, force, replica, peer)
    return _judge(m, now)


def feed(m: Promotion, event: PromotionEvent, now: float) -> tuple[Promotion, PromotionAction]:
    """Take one event; return the new machine and the next action (for a finished machine,
    its outcome again)."""
    if m.phase is Phase.DONE:
        return m, Promoted(m.outcome)
    if m.phase is Phase.REFUSED:
        return m, Refuse(m.outcome)
    match event:
        case ReplicaChanged(replica=replica):
            m = replace(m, replica=replica)
        case PeerChanged(peer=peer):
            m = replace(m, peer=peer)
        case Observed(replica=replica, peer=peer):
            m = replace(m, replica=replica, peer=peer)
        case CommandDone():
            return _on_done(m, event, now)
        case TimePassed():
            pass
    if m.phase is not Phase.JUDGING:
        return m, _pending(m)  # a command is running: its result comes next
    return _judge(m, now)


def _pending(m: Promotion) -> PromotionAction:
    """The action being carried out (asked again while its result is not in)."""
    if m.phase is Phase.DISCONNECTING:
        return Disconnect(m.outcome)
    if m.phase is Phase.CONNECTING:
        return Connect(m.outcome)
    return Promote(m.outcome, force=m.force)


def _refuse(m: Promotion, reason: str) -> tuple[Promotion, PromotionAction]:
    if m.disconnected and m.phase is not Phase.CONNECTING:
        # undo our own disconnect first: the returning peer must be able to connect
        why = f"{reason}; listening for the peer again first"
        m = m._to(Phase.CONNECTING, outcome=why, refusal=reason)
        return m, Connect(why)
    m = m._to(Phase.REFUSED, outcome=reason)
    return m, Refuse(reason)


def _done(m: Promotion, reason: str) -> tuple[Promotion, PromotionAction]:
    if m.disconnected:
        why = (f"{reason}; listening for the peer again so that it resynchronises from here "
               "when it returns")
        return m._to(Phase.CONNECTING, outcome=why), Connect(why)
    m = m._to(Phase.DONE, outcome=reason)
    return m, Promoted(reason)


def _on_done(m: Promotion, r: CommandDone, now: float) -> tuple[Promotion, PromotionAction]:
    res = m.resource
    if r.command == "disconnect" and m.phase is Phase.DISCONNECTING:
        if not r.ok:
            return _refuse(m, f"cannot drop DRBD resource {res}'s connection to the dead "
                              f"peer: {r.detail}")
        m = m._to(Phase.JUDGING, disconnected=True)
        return _judge(m, now)
    if r.command == "promote" and m.phase is Phase.PROMOTING:
        if not r.ok:
            return _refuse(m, f"cannot promote DRBD resource {res}: {r.detail}")
        m = replace(m, promoted=True)
        return _done(m, m.outcome)
    if r.command == "connect" and m.phase is Phase.CONNECTING:
        if m.refusal:
            extra = "" if r.ok else f" (and it cannot listen for the peer again: {r.detail})"
            return _refuse(m, m.refusal + extra)
        if not r.ok:
            return _refuse(m, f"DRBD resource {res} was promoted but cannot listen for the "
                              f"peer again: {r.detail}")
        m = m._to(Phase.DONE)
        return m, Promoted(m.outcome)
    # a result for a command that is not running: a bug in the caller
    return _refuse(m, f"DRBD resource {res}: unexpected result of {r.command} in phase "
                      f"{m.phase}")


def _waited(m: Promotion, now: float) -> float:
    return now - m.started_at


def _wait(m: Promotion, now: float, limit: float, kind: str,
          reason: str) -> tuple[Promotion, PromotionAction] | None:
    """A Wait until ``started_at + limit``, or None when that time has passed."""
    until = m.started_at + limit
    if now >= until - EPS:
        return None
    return m._to(Phase.JUDGING), Wait(until, kind, f"{reason} (waiting up to {_fmt(limit)}, "
                                                   f"{_fmt(until - now)} left)")


def _judge(m: Promotion, now: float) -> tuple[Promotion, PromotionAction]:
    res = m.resource
    r = m.view
    peer = m.peer
    if r.role == "Primary":
        return _done(m, f"DRBD resource {res} is Primary here")
    if peer.dead and r.connected and not m.disconnected:
        why = (f"{peer.reason}, but DRBD resource {res} is still {r.connection} to it "
               f"({r.describe()}): dropping that connection now instead of waiting for "
               "DRBD's own ping to notice")
        return m._to(Phase.DISCONNECTING, outcome=why), Disconnect(why)
    verdict = promotion_verdict(
        resource=res, role=r.role, disk=r.disk, peer_role=r.peer_role, peer_disk=r.peer_disk,
        connection=r.connection, split_brain=r.split_brain, force=m.force)
    if r.peer_role == "Primary":
        waiting = _wait(m, now, m.limits.peer_wait, "peer-primary",
                        f"DRBD resource {res}: DRBD still shows the peer Primary "
                        f"({r.describe()}; {peer.describe()}); waiting for it to demote")
        if waiting is not None:
            return waiting
        return _refuse(m, f"{verdict.reason} (still so after {_fmt(_waited(m, now))})")
    if not m.force and r.disk == "Inconsistent" and not r.split_brain:
        if r.connected and r.peer_disk == "Inconsistent" and not r.syncing:
            why = (f"DRBD resource {res}: both replicas are new (Inconsistent on both "
                   "sides); this node becomes the source of the initial full sync (the peer "
                   "waits as its target)")
            return (m._to(Phase.PROMOTING, outcome=why),
                    Promote(why, force=True, bootstrap=True))
        if not r.connected and r.peer_disk in ("Inconsistent", "DUnknown") and not peer.dead:
            waiting = _wait(m, now, m.limits.connect_wait, "connect",
                            f"DRBD resource {res}: the local disk is Inconsistent and the "
                            f"peer's DRBD is not connected ({r.describe()}); waiting for it "
                            "to tell whether this is a new pair or a resync is due")
            if waiting is not None:
                return waiting
    if verdict.allowed:
        why = verdict.reason
        if m.disconnected:
            why += " (disconnected from the dead peer; the fence-peer handler answers 'peer "\
                   "unreachable')"
        return (m._to(Phase.PROMOTING, outcome=why),
                Promote(why, force=m.force and r.disk != "UpToDate", risk=verdict.risk))
    if r.disk in ("Inconsistent", "Outdated", "Consistent") and not r.split_brain:
        if peer.dead:
            return _refuse(m, f"{verdict.reason}; the peer is dead ({peer.reason}), so no "
                              "resync can make it UpToDate")
        catching_up = r.sync_target or r.connection in ("Connecting", "Connected")
        if catching_up:
            progress = ""
            if r.sync_target and r.done is not None:
                progress = f", {r.done:.0f} % done"
                if r.eta_s is not None:
                    progress += f", about {r.eta_s:.0f} s to go"
            waiting = _wait(m, now, m.limits.sync_wait, "resync",
                            f"DRBD resource {res}: the local disk is {r.disk} "
                            f"({r.describe()}{progress}); waiting for the resync to make it "
                            "UpToDate before promoting")
            if waiting is not None:
                return waiting
            return _refuse(m, f"{verdict.reason} (the disk did not become UpToDate within "
                              f"{_fmt(m.limits.sync_wait)}: {r.describe()})")
    return _refuse(m, verdict.reason)
