"""The pure DRBD rules: promotion verdicts (a table) and the events2 view (real lines
recorded in the QEMU pair, DRBD 8.4.11 + drbd-utils 9.22)."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.core.replica import Record, ReplicaView, parse_events2, promotion_verdict

FIXTURES = Path(__file__).parent / "fixtures"


def rec(line: str) -> Record:
    r = parse_events2(line)
    assert r is not None, line
    return r

# (role, disk, peer_role, peer_disk, connection, split_brain) -> allowed without force,
# allowed with force, a fragment of the reason
PROMOTION_TABLE = [
    # the normal cases
    (("Secondary", "UpToDate", "Secondary", "UpToDate", "Connected", False), True, True,
     "UpToDate"),
    (("Secondary", "UpToDate", "Unknown", "DUnknown", "WFConnection", False), True, True,
     "UpToDate"),
    (("Secondary", "UpToDate", "Unknown", "Outdated", "StandAlone", False), True, True,
     "UpToDate"),
    (("Primary", "UpToDate", "Secondary", "UpToDate", "Connected", False), True, True,
     "already Primary"),
    # stale or incomplete data: only an administrator
    (("Secondary", "Outdated", "Unknown", "DUnknown", "WFConnection", False), False, True,
     "Outdated"),
    (("Secondary", "Inconsistent", "Primary", "UpToDate", "SyncTarget", False), False, False,
     "peer is Primary"),
    (("Secondary", "Inconsistent", "Unknown", "DUnknown", "StandAlone", False), False, True,
     "Inconsistent"),
    (("Secondary", "Consistent", "Unknown", "DUnknown", "WFConnection", False), False, True,
     "Consistent"),
    (("Secondary", "UpToDate", "Unknown", "DUnknown", "StandAlone", True), False, True,
     "split brain"),
    # never, forced or not
    (("Secondary", "UpToDate", "Primary", "UpToDate", "Connected", False), False, False,
     "peer is Primary"),
    (("Secondary", "Diskless", "Unknown", "DUnknown", "StandAlone", False), False, False,
     "no local data"),
    (("Secondary", "Failed", "Secondary", "UpToDate", "Connected", False), False, False,
     "no local data"),
    (("Secondary", "Attaching", "Unknown", "DUnknown", "StandAlone", False), False, False,
     "no local data"),
]


@pytest.mark.parametrize(("states", "plain", "forced", "fragment"), PROMOTION_TABLE)
def test_promotion_rules(states, plain, forced, fragment):
    role, disk, peer_role, peer_disk, connection, split = states
    kwargs = dict(resource="r0", role=role, disk=disk, peer_role=peer_role,
                  peer_disk=peer_disk, connection=connection, split_brain=split)
    v = promotion_verdict(**kwargs)
    assert v.allowed is plain, v.reason
    assert fragment in v.reason
    if not plain:
        assert v.reason.startswith("refusing to promote DRBD resource r0")
    f = promotion_verdict(**kwargs, force=True)
    assert f.allowed is forced, f.reason
    if forced and not plain:
        # a forced promotion says what may be lost
        assert "FORCED" in f.reason and f.risk
    if plain:
        assert f.risk == ""


def test_refusals_point_at_the_override_only_when_there_is_one():
    v = promotion_verdict(resource="r0", role="Secondary", disk="Outdated")
    assert "twinbeat takeover --force-data GROUP" in v.reason
    v = promotion_verdict(resource="r0", role="Secondary", disk="Diskless")
    assert "--force-data" not in v.reason


def test_parse_events2_lines():
    rec = parse_events2("2026-11-22T10:30:20.462757+00:00 change peer-device name:r0 "
                        "peer-node-id:0 conn-name:peer volume:0 replication:SyncSource "
                        "peer-disk:Inconsistent out-of-sync:24600\n")
    assert rec is not None
    assert (rec.what, rec.obj) == ("change", "peer-device")
    assert rec.fields["replication"] == "SyncSource"
    assert rec.fields["out-of-sync"] == "24600"
    end = parse_events2("exists -")
    assert end is not None and end.obj == "-" and end.fields == {}
    assert parse_events2("") is None
    assert parse_events2("garbage") is None
    assert parse_events2("exists resource no-colon-here") is None


def _replay(name: str, step: float = 1.0) -> tuple[ReplicaView, list[str]]:
    view = ReplicaView("r0")
    said: list[str] = []
    t = 0.0
    for line in (FIXTURES / name).read_text().splitlines():
        if line.startswith("#"):
            continue
        r = rec(line)
        if r.fields.get("name") == "r0":
            said += view.apply(r, t)
        t += step
    return view, said


def test_resync_as_source_from_a_real_stream():
    view, said = _replay("events2-resync-source.txt")
    # the stream: Connecting -> Connected -> WFBitMapS -> SyncSource -> Established
    assert any("SyncSource" in s for s in said)
    assert (view.role, view.connection, view.disk, view.peer_disk, view.replication) == (
        "Primary", "Connected", "UpToDate", "UpToDate", "Established")
    assert view.syncing is False and view.out_of_sync_kib == 0
    assert view.split_brain is False


def test_sync_progress_rate_and_eta():
    view = ReplicaView("r0")
    base = "exists peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 "
    view.apply(rec("exists connection name:r0 connection:Connected role:Primary"),
               0.0)
    view.apply(rec(base + "replication:SyncTarget peer-disk:UpToDate "
                                    "out-of-sync:24600"), 10.0)
    assert view.syncing and view.done == 0.0
    assert view.rate_kib_s() is None  # one sample: no rate yet
    view.apply(rec(base + "replication:SyncTarget peer-disk:UpToDate "
                                    "out-of-sync:16828"), 14.0)
    # 7772 KiB in 4 s
    assert view.rate_kib_s() == pytest.approx(1943.0)
    assert view.eta_s() == pytest.approx(16828 / 1943.0)
    assert view.done == pytest.approx(100 * 7772 / 24600)
    d = view.as_dict(15.0)
    assert d["syncing"] is True and d["sync_rate_kib_s"] == pytest.approx(1943.0)
    view.apply(rec(base + "replication:Established peer-disk:UpToDate "
                                    "out-of-sync:0"), 20.0)
    d = view.as_dict(21.0)
    assert d["syncing"] is False and d["sync_done_percent"] is None and d["sync_eta_s"] is None


def test_split_brain_from_a_real_stream_then_resolved():
    view, said = _replay("events2-split-brain.txt")
    assert view.split_brain is True
    assert view.connection == "StandAlone" and view.peer_role == "Unknown"
    assert any("SPLIT BRAIN" in s for s in said)
    assert any("after-split-brain policy" in s for s in said)
    d = view.as_dict(1000.0)
    assert d["split_brain"] is True and d["split_brain_age"] is not None
    # the manual resolution: reconnect, the victim resyncs
    view.apply(rec("create connection name:r0 connection:Connected role:Secondary"), 1001.0)
    assert view.as_dict(1001.0)["split_brain"] is True  # connected, nothing replicates yet
    said = view.apply(rec("create peer-device name:r0 volume:0 replication:SyncSource "
                          "peer-disk:Inconsistent out-of-sync:2048"), 1002.0)
    assert view.as_dict(1002.0)["split_brain"] is False
    assert any("split brain resolved" in s for s in said)


def test_a_plain_disconnect_is_not_a_split_brain():
    view = ReplicaView("r0")
    for line in ("exists connection name:r0 connection:Connected role:Secondary",
                 "change connection name:r0 connection:Disconnecting role:Unknown",
                 "change connection name:r0 connection:StandAlone",
                 "destroy connection name:r0"):
        view.apply(rec(line), 1.0)
    assert view.connection == "StandAlone" and view.split_brain is False


def test_resource_taken_down_keeps_a_split_brain_flag():
    view = ReplicaView("r0")
    view.mark_split_brain(1.0, "test")
    view.apply(rec("destroy resource name:r0"), 2.0)
    assert view.connection == "Unconfigured" and view.split_brain is True


def test_resync_rate_is_measured_over_the_last_reports_not_since_the_start():
    """The last QEMU run printed `rate None`: a 48 MiB resync that took 3 s gave the status
    one out-of-sync figure. The monitor now asks every second; the rate is the fall of the
    figure over the last RATE_WINDOW seconds of reports, so a resync that slows down shows
    its rate now, not its average."""
    v = ReplicaView("r0")
    base = "name:r0 peer-node-id:0 conn-name:peer volume:0"
    v.apply(rec(f"change peer-device {base} replication:SyncTarget peer-disk:UpToDate "
                "received:0 sent:0 out-of-sync:10000"), 100.0)
    assert v.rate_kib_s() is None and v.eta_s() is None  # one figure: nothing to measure
    v.apply(rec("exists resource name:r0 role:Secondary"), 100.4)  # no figure: no sample
    assert v.rate_kib_s() is None
    for t, oos in ((101.0, 9000), (102.0, 8000)):
        v.apply(rec(f"exists peer-device {base} replication:SyncTarget peer-disk:UpToDate "
                    f"received:{10000 - oos} sent:0 out-of-sync:{oos}"), t)
    assert v.rate_kib_s() == pytest.approx(1000.0)
    assert v.eta_s() == pytest.approx(8.0)
    v.apply(rec(f"exists peer-device {base} replication:SyncTarget peer-disk:UpToDate "
                "received:2100 sent:0 out-of-sync:7900"), 112.0)
    assert v.rate_kib_s() == pytest.approx(10.0)  # 8000 -> 7900 over the last 10 s
    st = v.as_dict(112.0)
    assert st["sync_rate_kib_s"] == 10.0 and st["sync_eta_s"] == 790.0
    assert st["sync_done_percent"] == pytest.approx(21.0)


def test_a_statistics_line_without_out_of_sync_means_none_left():
    v = ReplicaView("r0")
    base = "name:r0 peer-node-id:0 conn-name:peer volume:0"
    v.apply(rec(f"change peer-device {base} replication:SyncSource peer-disk:Inconsistent "
                "received:0 sent:0 out-of-sync:4000"), 10.0)
    v.apply(rec(f"exists peer-device {base} replication:SyncSource peer-disk:Inconsistent "
                "received:0 sent:4000"), 11.0)  # drbdsetup leaves out-of-sync:0 out
    assert v.out_of_sync_kib == 0 and v.done == 100.0
    assert v.rate_kib_s() == pytest.approx(4000.0)
