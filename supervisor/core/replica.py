"""What the supervisor knows about a DRBD replica, and when it may be promoted (pure: no I/O).

Two things live here, both without side effects so that they are tested as tables:

* ``promotion_verdict``: the rule the ``drbddisk`` agent applies before ``drbdadm primary``.
  Only an ``UpToDate`` local disk is promoted automatically. An ``Outdated`` disk (the peer
  marked it stale through the outdate-peer handshake), an ``Inconsistent`` one (a resync to
  it never finished) or a ``Consistent`` one (its peer state is unknown) is refused unless an
  administrator forces it, and the verdict then says what may be lost. A node whose peer is
  Primary, or whose disk is not attached, is refused even when forced: DRBD 8.4 allows one
  Primary, and there is no local data to serve.
* ``ReplicaView``: the state of one resource built from ``drbdsetup events2 --statistics``
  lines (the monitor in ``supervisor.drivers.drbdmon`` feeds them), with the sync progress,
  its rate and an estimated finish, and split-brain detection.

events2 lines are ``<what> <object> key:value ...``, e.g. (DRBD 8.4.11, drbd-utils 9.22)::

    exists resource name:r0 role:Primary suspended:no
    exists connection name:r0 peer-node-id:0 conn-name:peer connection:Connected role:Secondary
    exists device name:r0 volume:0 minor:0 disk:UpToDate size:262100 ...
    exists peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 replication:SyncSource
        peer-disk:Inconsistent resync-suspended:no received:0 sent:425 out-of-sync:24600 ...
    exists -
    change connection name:r0 peer-node-id:0 conn-name:peer connection:Connecting
    call helper name:r0 peer-node-id:0 conn-name:peer volume:0 minor:0 helper:split-brain
    destroy connection name:r0 peer-node-id:0 conn-name:peer

(all seen in the QEMU pair). 8.4 names its connection states the DRBD 9 way in events2
(``Connecting`` for /proc/drbd's WFConnection); the resync state is in ``replication``. A
split brain that no automatic policy resolves shows as a call of the ``split-brain`` helper
(the kernel calls it whether or not a handler is configured), then StandAlone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Disk states a promotion can never use, forced or not: there is no local data.
NO_DATA = frozenset({"Diskless", "Attaching", "Detaching", "Failed", "Negotiating", "DUnknown"})

#: Replication (8.4: connection) states of a running resync, with the local side's role.
SYNC_TARGET = frozenset({"SyncTarget", "PausedSyncT", "StartingSyncT", "WFBitMapT",
                         "WFSyncUUID", "VerifyT"})
#: the resync rate is measured over this many seconds of out-of-sync reports
RATE_WINDOW = 10.0
MAX_SAMPLES = 64

SYNC_SOURCE = frozenset({"SyncSource", "PausedSyncS", "StartingSyncS", "WFBitMapS",
                         "VerifyS"})


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str
    #: when allowed only because it was forced: what the administrator may lose
    risk: str = ""


def promotion_verdict(
    *,
    resource: str,
    role: str,
    disk: str,
    peer_role: str = "Unknown",
    peer_disk: str = "DUnknown",
    connection: str = "StandAlone",
    split_brain: bool = False,
    force: bool = False,
) -> Verdict:
    """May the local replica of ``resource`` be made Primary now?"""
    refusing = f"refusing to promote DRBD resource {resource}"
    if role == "Primary":
        return Verdict(True, f"{resource} is already Primary here")
    if peer_role == "Primary":
        return Verdict(False, f"{refusing}: the peer is Primary "
                              f"({connection}); DRBD allows one Primary, the peer must "
                              "demote (or be stopped) first")
    if disk in NO_DATA:
        return Verdict(False, f"{refusing}: the local disk is {disk}, not UpToDate: there "
                              "is no local data to serve")
    risk = ""
    if disk == "UpToDate":
        if not split_brain:
            return Verdict(True, f"{resource}: local disk UpToDate ({connection}, peer "
                                 f"{peer_disk})")
        risk = ("the replicas diverged (split brain): promoting this one serves only the "
                "writes made here; the peer's writes since the split are not here")
        problem = "split brain detected, the two replicas hold different data"
    elif disk == "Outdated":
        risk = ("this replica was marked Outdated: every write the peer acknowledged after "
                "the replication link broke is missing here")
        problem = "the local disk is Outdated, not UpToDate (the peer marked it stale)"
    elif disk == "Inconsistent":
        risk = ("this replica is Inconsistent: a resync to it did not finish, so the file "
                "system may be damaged and recent writes are missing")
        problem = "the local disk is Inconsistent, not UpToDate (a resync to it did not finish)"
    elif disk == "Consistent":
        risk = ("this replica is Consistent but its peer's state is unknown: writes made on "
                "the peer while the two were apart may be missing here")
        problem = "the local disk is Consistent, not UpToDate (the peer may hold newer data)"
    else:
        return Verdict(False, f"{refusing}: unknown disk state {disk!r}")
    if force:
        return Verdict(True, f"{resource}: promotion FORCED by an administrator: {problem}",
                       risk)
    return Verdict(False, f"{refusing}: {problem}; promoting it could serve stale data"
                          " (an administrator can force it: "
                          "twinbeat takeover --force-data GROUP)")


# -- events2 -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One events2 line: ``what`` (exists|create|change|destroy|call|response), ``obj``
    (resource|connection|device|peer-device|helper|-) and its key:value fields."""

    what: str
    obj: str
    fields: dict[str, str]


def parse_events2(line: str) -> Record | None:
    """One line of ``drbdsetup events2`` output; None for a blank or unparsable line. An
    optional leading timestamp (``--timestamps``) is skipped."""
    words = line.split()
    if words and words[0][:1].isdigit():
        words = words[1:]
    if len(words) < 2:
        return None
    fields: dict[str, str] = {}
    for word in words[2:]:
        key, sep, value = word.partition(":")
        if not sep:
            return None
        fields[key] = value
    return Record(words[0], words[1], fields)


@dataclass(frozen=True)
class Replica:
    """What the core knows of one DRBD resource (a snapshot of the monitor's ReplicaView,
    posted to the core as ReplicaChanged)."""

    name: str
    role: str = "Unknown"
    peer_role: str = "Unknown"
    connection: str = "Unconfigured"
    disk: str = "DUnknown"
    peer_disk: str = "DUnknown"
    split_brain: bool = False
    out_of_sync_kib: int | None = None
    replication: str = "Off"
    done: float | None = None  # resync progress in percent, while one runs

    @property
    def syncing(self) -> bool:
        """A resync is running (either way)."""
        return self.replication in SYNC_TARGET or self.replication in SYNC_SOURCE

    @property
    def in_sync(self) -> bool:
        """Both replicas hold the same data and this side knows it: Connected, UpToDate on
        both sides, no resync running, no split brain. Only such a replica is given a group
        back from a peer that runs it (the returning node's data is otherwise older)."""
        return (self.disk == "UpToDate" and self.peer_disk == "UpToDate"
                and self.connection == "Connected" and not self.split_brain
                and self.replication in ("Established", "Off"))

    def not_in_sync(self) -> str:
        """Why not in sync, as a phrase ("" when it is)."""
        if self.in_sync:
            return ""
        if self.split_brain:
            return f"replica {self.name} is in SPLIT BRAIN"
        if self.replication in SYNC_TARGET:
            done = "" if self.done is None else f", {self.done:.0f} % done"
            return f"replica {self.name} is {self.disk}, resynchronising ({self.replication}{done})"
        if self.connection != "Connected":
            return (f"replica {self.name} is {self.disk} and not connected to the peer's "
                    f"({self.connection})")
        return f"replica {self.name} is {self.disk}, the peer's {self.peer_disk}"


@dataclass
class ReplicaView:
    """One DRBD resource as the events2 stream describes it (one volume)."""

    name: str
    role: str = "Unknown"
    peer_role: str = "Unknown"
    connection: str = "Unconfigured"
    disk: str = "DUnknown"
    peer_disk: str = "DUnknown"
    replication: str = "Off"
    #: KiB the local node still has to send or receive (peer-device ``out-of-sync``)
    out_of_sync_kib: int | None = None
    #: sync progress in percent while syncing: how much of what was out of sync when the
    #: sync started has been sent (8.4's events2 has no ``done`` field; /proc/drbd computes
    #: its "sync'ed" figure the same way)
    done: float | None = None
    split_brain: bool = False
    split_brain_since: float | None = None
    changed_at: float = 0.0
    # (monotonic time, out-of-sync KiB) at the start of the running sync, for the progress
    _sync_start: tuple[float, int] | None = field(default=None, repr=False)
    _sync_last: tuple[float, int] | None = field(default=None, repr=False)
    # (monotonic time, out-of-sync KiB) each time DRBD reported the figure during the sync:
    # the rate is measured over the last RATE_WINDOW seconds of them
    _samples: list[tuple[float, int]] = field(default_factory=list, repr=False)

    @property
    def syncing(self) -> bool:
        return self.replication in SYNC_TARGET or self.replication in SYNC_SOURCE

    @property
    def diverging(self) -> bool:
        """This node writes as Primary with no peer connected: every write adds to the
        out-of-sync figure, which DRBD reports in no event (only a snapshot shows it)."""
        return self.role == "Primary" and self.connection != "Connected"

    def rate_kib_s(self) -> float | None:
        """The resync rate now: how fast DRBD's out-of-sync figure fell over the last
        RATE_WINDOW seconds of its reports (the monitor asks for one every poll_sync seconds
        while a resync runs); None until two reports half a second apart show progress."""
        if not self._samples:
            return None
        t1, k1 = self._samples[-1]
        window = [x for x in self._samples if t1 - x[0] <= RATE_WINDOW] or self._samples
        t0, k0 = window[0]
        if t1 - t0 < 0.5 or k0 <= k1:
            t0, k0 = self._samples[0]
            if t1 - t0 < 0.5 or k0 <= k1:
                return None
        return (k0 - k1) / (t1 - t0)

    def eta_s(self) -> float | None:
        rate = self.rate_kib_s()
        if rate is None or self.out_of_sync_kib is None or rate <= 0:
            return None
        return self.out_of_sync_kib / rate

    def apply(self, rec: Record, now: float) -> list[str]:
        """Take one record for this resource; return sentences worth a log line."""
        f = rec.fields
        said: list[str] = []
        reported = False
        before = (self.role, self.peer_role, self.connection, self.disk, self.peer_disk,
                  self.replication)
        if rec.obj == "resource":
            if rec.what == "destroy":
                split, since = self.split_brain, self.split_brain_since
                self.__init__(self.name)  # type: ignore[misc]
                self.split_brain, self.split_brain_since = split, since
                self.connection = "Unconfigured"
            else:
                self.role = f.get("role", self.role)
        elif rec.obj == "connection":
            if rec.what == "destroy":  # 8.4 after a disconnect: StandAlone, no peer
                self.connection, self.peer_role = "StandAlone", "Unknown"
            else:
                self.connection = f.get("connection", self.connection)
                self.peer_role = f.get("role", self.peer_role)
        elif rec.obj == "device":
            self.disk = f.get("disk", self.disk)
        elif rec.obj == "peer-device":
            if rec.what == "destroy":
                self.peer_disk, self.replication = "DUnknown", "Off"
            else:
                self.peer_disk = f.get("peer-disk", self.peer_disk)
                self.replication = f.get("replication", self.replication)
            if f.get("out-of-sync", "").isdigit():
                self.out_of_sync_kib = int(f["out-of-sync"])
                reported = True
            elif "sent" in f or "received" in f:
                # statistics without out-of-sync: DRBD leaves the figure out when it is 0
                self.out_of_sync_kib = 0
                reported = True
        elif rec.obj == "helper" and rec.what == "call":
            helper = f.get("helper", "")
            if helper == "split-brain":
                self._split(now, said, "DRBD found diverged data when the nodes reconnected "
                                       "and no automatic policy resolved it")
            elif helper == "initial-split-brain":
                said.append(f"DRBD {self.name}: split brain found on reconnection; the "
                            "configured after-split-brain policy decides")
        self._track_sync(now, reported)
        if self.split_brain and self.connection == "Connected" and self.replication != "Off":
            self.split_brain = False
            self.split_brain_since = None
            said.append(f"DRBD {self.name}: the replicas are connected again, split brain "
                        "resolved")
        after = (self.role, self.peer_role, self.connection, self.disk, self.peer_disk,
                 self.replication)
        if after != before:
            self.changed_at = now
            said.append(f"DRBD {self.name}: {self.describe()}")
        return said

    def mark_split_brain(self, now: float, detail: str) -> list[str]:
        said: list[str] = []
        self._split(now, said, detail)
        return said

    def _split(self, now: float, said: list[str], detail: str) -> None:
        if not self.split_brain:
            self.split_brain = True
            self.split_brain_since = now
            said.append(f"DRBD {self.name}: SPLIT BRAIN detected ({detail}); the replicas "
                        "diverged and will not reconnect on their own: see "
                        "`twinbeat resolve-split-brain --help`")

    def _track_sync(self, now: float, reported: bool = False) -> None:
        if not self.syncing:
            self._sync_start = self._sync_last = None
            self._samples = []
            self.done = None
            return
        if self.out_of_sync_kib is None:
            return
        if self._sync_start is None or self.out_of_sync_kib > self._sync_start[1]:
            self._sync_start = (now, self.out_of_sync_kib)
            self._samples = []
        if reported or not self._samples:
            self._samples.append((now, self.out_of_sync_kib))
            del self._samples[:-MAX_SAMPLES]
        self._sync_last = (now, self.out_of_sync_kib)
        total = self._sync_start[1]
        self.done = 100.0 if total == 0 else 100.0 * (total - self.out_of_sync_kib) / total

    def snapshot(self) -> Replica:
        return Replica(self.name, self.role, self.peer_role, self.connection, self.disk,
                       self.peer_disk, self.split_brain, self.out_of_sync_kib,
                       self.replication, self.done if self.syncing else None)

    def describe(self) -> str:
        text = (f"{self.role}/{self.peer_role}, {self.connection}, disks "
                f"{self.disk}/{self.peer_disk}")
        if self.syncing:
            text += f", {self.replication}"
        return text

    def as_dict(self, now: float) -> dict[str, Any]:
        rate, eta = self.rate_kib_s(), self.eta_s()
        return {
            "name": self.name,
            "role": self.role,
            "peer_role": self.peer_role,
            "connection": self.connection,
            "disk": self.disk,
            "peer_disk": self.peer_disk,
            "replication": self.replication,
            "syncing": self.syncing,
            "sync_done_percent": self.done if self.syncing else None,
            "out_of_sync_kib": self.out_of_sync_kib,
            "sync_rate_kib_s": None if rate is None else round(rate, 1),
            "sync_eta_s": None if eta is None else round(eta, 1),
            "split_brain": self.split_brain,
            "split_brain_age": (None if self.split_brain_since is None
                                else round(now - self.split_brain_since, 1)),
            "changed_age": round(now - self.changed_at, 1),
        }
