"""The Prometheus text exposition of one node (``[metrics] listen``, path ``/metrics``).

Built with ``prometheus_client`` (Debian's python3-prometheus-client in the image) from the
same status the command line shows, at every scrape. twinbeat's own metrics are
``twinbeat_*``; the DRBD metrics are named, labelled and valued as drbd-reactor's Prometheus
plugin does it (with ``enums = true``), so that its dashboards work on the DRBD 8.4 this
image runs, which drbd-reactor does not support:

* ``drbd_resource_resources`` (gauge) - number of resources;
* ``drbd_resource_role{name, drbd_resource_role}`` - 1 for the current role of Unknown,
  Primary, Secondary, else 0;
* ``drbd_connection_state{name, conn_name, peer_node_id, drbd_connection_state}`` - 1 for
  the current one of StandAlone .. Connected;
* ``drbd_device_state{name, volume, minor, drbd_device_state}`` - 1 for the current one of
  Diskless .. UpToDate;
* ``drbd_peerdevice_outofsync_bytes{name, conn_name, peer_node_id, volume}``.

Only what ``drbdsetup events2`` reports for 8.4 is exported (no activity-log or I/O
counters).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# drbd-reactor's enum values (src/drbd.rs: Role, ConnectionState, DiskState iterators)
DRBD_ROLES = ("Unknown", "Primary", "Secondary")
DRBD_CONNECTION_STATES = ("StandAlone", "Disconnecting", "Unconnected", "Timeout", "BrokenPipe",
                          "NetworkFailure", "ProtocolError", "TearDown", "Connecting",
                          "Connected")
DRBD_DISK_STATES = ("Diskless", "Attaching", "Detaching", "Failed", "Negotiating",
                    "Inconsistent", "Outdated", "DUnknown", "Consistent", "UpToDate")
PEER_STATES = ("unknown", "alive", "dead")
GROUP_STATES = ("idle", "starting", "running", "stopping", "stop_failed")


class StatusCollector(Collector):
    """Metrics from one status snapshot (see ``supervisor.loop.Supervisor.status``)."""

    def __init__(self, status: Mapping[str, Any], counters: Mapping[str, Any] | None = None,
                 drbd_ids: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.st = status
        self.counters = counters or {}
        self.drbd_ids = drbd_ids or {}

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        st = self.st
        me, peer = st["node"], st["peer"]
        info = GaugeMetricFamily("twinbeat_node_info", "This node, its peer and cluster",
                                 labels=["node", "peer", "cluster"])
        info.add_metric([me, peer["name"], st["cluster"]], 1)
        yield info
        yield _gauge("twinbeat_generation", "Boot generation of the supervisor",
                     st["generation"])
        yield _gauge("twinbeat_uptime_seconds", "Seconds since the supervisor started",
                     st.get("uptime", 0))
        maint = GaugeMetricFamily("twinbeat_maintenance", "1 while the node is in maintenance "
                                  "mode (its resources are left as they are)", labels=["node"])
        for node in (me, peer["name"]):
            maint.add_metric([node], 1 if node in (st.get("maintenance") or ()) else 0)
        yield maint
        state = GaugeMetricFamily("twinbeat_peer_state", "The peer's state as seen here "
                                  "(1 for the current state)", labels=["peer", "state"])
        for s in PEER_STATES:
            state.add_metric([peer["name"], s], 1 if peer["state"] == s else 0)
        yield state
        yield _gauge("twinbeat_peer_last_heard_seconds", "Seconds since the peer was last "
                     "heard on any link", peer.get("last_heard_age"))
        world = st["world"]
        yield _gauge("twinbeat_world_reachable", "1 when this node sees the outside world "
                     "(carrier, ping nodes)", 1 if world["ok"] else 0)
        wd = st["watchdog"]
        yield _gauge("twinbeat_watchdog_ok", "1 when the watchdog lets this node own groups",
                     1 if wd.get("ok", True) else 0)
        yield _gauge("twinbeat_watchdog_last_feed_seconds",
                     "Seconds since the watchdog was last fed", wd.get("last_feed_age"))
        yield _gauge("twinbeat_can_own", "1 when this node may own groups",
                     1 if st.get("can_own", True) else 0)
        yield from self._links(st)
        yield from self._groups(st, me)
        dropped = CounterMetricFamily("twinbeat_frames_dropped", "Heartbeat frames dropped, "
                                      "by cause", labels=["cause"])
        for cause, n in sorted((st.get("dropped") or {}).items()):
            dropped.add_metric([cause], n)
        yield dropped
        events = CounterMetricFamily("twinbeat_events", "Events recorded by this node since "
                                     "the supervisor started", labels=["kind", "severity"])
        for (kind, severity), n in sorted(self.counters.get("events", {}).items()):
            events.add_metric([kind, severity], n)
        yield events
        yield CounterMetricFamily("twinbeat_failovers", "Groups this node took over from a "
                                  "dead peer since the supervisor started",
                                  value=self.counters.get("failovers", 0))
        yield CounterMetricFamily("twinbeat_takeovers", "Groups this node started (failover "
                                  "or handover) since the supervisor started",
                                  value=self.counters.get("takeovers", 0))
        for name, n in (("hook_failures", "Hook runs that failed"),
                        ("mail_failures", "Mail deliveries the smarthost did not accept")):
            yield CounterMetricFamily(f"twinbeat_{name}", n, value=self.counters.get(name, 0))
        yield _gauge("twinbeat_mail_queue_events", "Events waiting to be mailed",
                     self.counters.get("mail_queue", 0))
        loop = st.get("loop") or {}
        if loop.get("max_lag_ms") is not None:
            yield _gauge("twinbeat_loop_max_lag_seconds", "Worst lateness of the supervisor's "
                         "loop since it started", loop["max_lag_ms"] / 1000)
        yield from self._drbd(st.get("replication") or [])

    def _links(self, st: Mapping[str, Any]) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        up = GaugeMetricFamily("twinbeat_link_up", "1 while heartbeats arrive on the link",
                               labels=["link", "type"])
        loss = GaugeMetricFamily("twinbeat_link_loss_ratio", "Share of the last 100 "
                                 "heartbeats missing on the link", labels=["link"])
        age = GaugeMetricFamily("twinbeat_link_last_heard_seconds", "Seconds since a "
                                "heartbeat arrived on the link", labels=["link"])
        gap = GaugeMetricFamily("twinbeat_link_worst_gap_seconds", "Longest silence between "
                                "two heartbeats on the link since the supervisor started",
                                labels=["link"])
        rtt = GaugeMetricFamily("twinbeat_link_rtt_seconds", "Round-trip time of the last "
                                "heartbeat echoed on the link (kept while the pair is idle: "
                                "frames then wait for the reader's beat, none is echoed)",
                                labels=["link"])
        hears = GaugeMetricFamily("twinbeat_link_heard_by_peer", "1 when the peer's last "
                                  "beat says it hears this node on the link", labels=["link"])
        frames = CounterMetricFamily("twinbeat_link_frames_received", "Valid heartbeats "
                                     "received on the link", labels=["link"])
        for link in st["links"]:
            name = link["name"]
            up.add_metric([name, link["type"]], 1 if link["state"] in ("up", "late") else 0)
            if link.get("loss") is not None:
                loss.add_metric([name], link["loss"])
            if link.get("last_heard_age") is not None:
                age.add_metric([name], link["last_heard_age"])
            if link.get("worst_gap_ms") is not None:  # the loop's figure, in ms
                gap.add_metric([name], link["worst_gap_ms"] / 1000)
            if link.get("rtt") is not None:
                rtt.add_metric([name], link["rtt"])
            if link.get("peer_hears_us") is not None:
                hears.add_metric([name], 1 if link["peer_hears_us"] else 0)
            frames.add_metric([name], link.get("received", 0))
        yield from (up, loss, age, gap, rtt, hears, frames)

    def _groups(self, st: Mapping[str, Any], me: str) -> Iterable[GaugeMetricFamily]:
        owner = GaugeMetricFamily("twinbeat_group_owner", "1 for the node that owns the group",
                                  labels=["group", "node"])
        here = GaugeMetricFamily("twinbeat_group_state", "The group's state on this node (1 "
                                 "for the current state)", labels=["group", "state"])
        failed = GaugeMetricFamily("twinbeat_group_failed", "1 while the group may not run "
                                   "here after failures", labels=["group"])
        failures = GaugeMetricFamily("twinbeat_group_failures", "Failures of the group "
                                     "counted here (restart window)", labels=["group"])
        pinned = GaugeMetricFamily("twinbeat_group_pinned", "1 while an admin pin holds the "
                                   "group", labels=["group"])
        for g in st["groups"]:
            name = g["name"]
            if g.get("owner"):
                owner.add_metric([name, g["owner"]], 1)
            for s in GROUP_STATES:
                here.add_metric([name, s], 1 if g["local"] == s else 0)
            failed.add_metric([name], 1 if g.get("failed") else 0)
            failures.add_metric([name], g.get("failures", 0))
            pinned.add_metric([name], 1 if g.get("pinned") else 0)
        yield from (owner, here, failed, failures, pinned)

    def _drbd(self, replicas: list[Mapping[str, Any]]) -> Iterable[GaugeMetricFamily]:
        if not replicas:
            return
        count = GaugeMetricFamily("drbd_resource_resources", "Number of resources")
        count.add_metric([], len(replicas))
        role = GaugeMetricFamily("drbd_resource_role", "DRBD role of the resource",
                                 labels=["name", "drbd_resource_role"])
        conn = GaugeMetricFamily("drbd_connection_state", "DRBD connection state",
                                 labels=["name", "conn_name", "peer_node_id",
                                         "drbd_connection_state"])
        dev = GaugeMetricFamily("drbd_device_state", "DRBD device state",
                                labels=["name", "volume", "minor", "drbd_device_state"])
        oos = GaugeMetricFamily("drbd_peerdevice_outofsync_bytes", "Number of bytes currently "
                                "out of sync with this peer, according to the bitmap that "
                                "DRBD has for it",
                                labels=["name", "conn_name", "peer_node_id", "volume"])
        for r in replicas:
            name = r["name"]
            ids = self.drbd_ids.get(name, {})
            conn_name, peer_id = ids.get("conn-name", ""), ids.get("peer-node-id", "0")
            volume, minor = ids.get("volume", "0"), ids.get("minor", "")
            for value in DRBD_ROLES:
                role.add_metric([name, value], 1 if r["role"] == value else 0)
            for value in DRBD_CONNECTION_STATES:
                conn.add_metric([name, conn_name, peer_id, value],
                                1 if r["connection"] == value else 0)
            for value in DRBD_DISK_STATES:
                dev.add_metric([name, volume, minor, value], 1 if r["disk"] == value else 0)
            if r.get("out_of_sync_kib") is not None:
                oos.add_metric([name, conn_name, peer_id, volume], r["out_of_sync_kib"] * 1024)
        yield from (count, role, conn, dev, oos)


def _gauge(name: str, text: str, value: float | None) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, text)
    if value is not None:
        g.add_metric([], value)
    return g


def render(status: Mapping[str, Any], counters: Mapping[str, Any] | None = None,
           drbd_ids: Mapping[str, Mapping[str, str]] | None = None) -> bytes:
    """The exposition text for one status snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status, counters, drbd_ids))
    return generate_latest(registry)
