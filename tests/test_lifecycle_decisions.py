"""Updates of one node, the pure parts: the health check that keeps or rolls back a new
slot, what a booting node does about its slot, and which bundles are refused (and why)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from supervisor.lifecycle import bundlecheck
from supervisor.lifecycle.bootdecide import Pending, on_boot
from supervisor.lifecycle.health import (
    Baseline,
    Probe,
    baseline_from_json,
    baseline_from_status,
    baseline_to_json,
    judge,
)

PURE = ("health.py", "bootdecide.py", "bundlecheck.py", "upgrade.py")
#: supervisor.core.compat is the core's (its own purity test, in test_core_unit, covers what
#: it imports in turn)
ALLOWED = {"__future__", "collections.abc", "dataclasses", "enum", "typing", "re",
           "supervisor.lifecycle.health", "supervisor.lifecycle.bundlecheck",
           "supervisor.core.compat"}


def test_the_decision_modules_import_nothing_with_side_effects() -> None:
    here = Path(__file__).resolve().parent.parent / "supervisor" / "lifecycle"
    for name in PURE:
        tree = ast.parse((here / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            for m in mods:
                assert m in ALLOWED, f"{name} imports {m}"


def status(peer: str = "alive", links: dict[str, str] | None = None,
           disk: str | None = "UpToDate", failed: str | None = None) -> dict[str, Any]:
    links = {"serial": "up", "crossover": "up", "public": "up"} if links is None else links
    return {
        "node": "node2",
        "peer": {"name": "node1", "state": peer},
        "links": [{"name": k, "state": v} for k, v in links.items()],
        "replication": [] if disk is None else [{"name": "r0", "disk": disk}],
        "groups": [{"name": "service", "failed": failed is not None,
                    "failed_reason": failed}],
    }


FULL = Baseline(links=("serial", "crossover", "public"), replicas=("r0",))
RUNNING = Probe("active", status=status())


def test_healthy_when_everything_that_was_up_is_up_again() -> None:
    v = judge(FULL, RUNNING, 42.0, 300.0)
    assert v.state == "healthy"
    assert v.reasons == ("healthy after 42 s: twinbeat.service running, peer alive, links "
                         "serial, crossover, public up, DRBD r0 attached",)


@pytest.mark.parametrize(("probe", "reason"), [
    (Probe("activating"), "twinbeat.service is activating, not running"),
    (Probe("active", error="no control socket"),
     "the supervisor does not answer (no control socket)"),
    (Probe("active", status=status(peer="dead")), "the peer node1 is dead"),
    (Probe("active", status=status(links={"serial": "up", "crossover": "down",
                                          "public": "up"})),
     "link crossover is down (it was up before the update)"),
    (Probe("active", status=status(links={"serial": "up", "public": "up"})),
     "link crossover (up before the update) is not configured"),
    (Probe("active", status=status(disk="Diskless")),
     "DRBD resource r0 is not attached (disk Diskless)"),
    (Probe("active", status=status(disk=None)),
     "DRBD resource r0 (attached before the update) is not running"),
    (Probe("active", status=status(failed="start of web failed")),
     "group service failed here: start of web failed"),
])
def test_waits_within_the_bound_and_says_for_what(probe: Probe, reason: str) -> None:
    v = judge(FULL, probe, 10.0, 300.0)
    assert v.state == "waiting"
    assert v.reasons == (reason,)


def test_fails_at_the_bound_with_every_reason() -> None:
    probe = Probe("active", status=status(peer="dead", disk="Diskless"))
    v = judge(FULL, probe, 300.0, 300.0)
    assert v.state == "failed"
    assert v.reasons == ("not healthy within 300 s: the peer node1 is dead",
                         "not healthy within 300 s: DRBD resource r0 is not attached "
                         "(disk Diskless)")


def test_a_failed_supervisor_fails_at_once() -> None:
    v = judge(FULL, Probe("failed", "exit-code"), 3.0, 300.0)
    assert v.state == "failed"
    assert v.reasons == ("twinbeat.service failed (exit-code)",)


def test_a_resyncing_disk_counts_as_attached() -> None:
    assert judge(FULL, Probe("active", status=status(disk="Inconsistent")), 5, 300).state \
        == "healthy"


def test_links_down_before_the_update_are_not_waited_for() -> None:
    base = Baseline(links=("serial", "public"), replicas=())
    probe = Probe("active", status=status(links={"serial": "up", "crossover": "down",
                                                 "public": "up"}, disk=None))
    assert judge(base, probe, 1, 300).state == "healthy"


def test_baseline_is_what_is_up_now_and_round_trips() -> None:
    st = status(links={"serial": "up", "crossover": "down", "public": "up"})
    b = baseline_from_status(st)
    assert b == Baseline(links=("serial", "public"), replicas=("r0",), peer=True)
    assert baseline_from_json(baseline_to_json(b)) == b
    lone = baseline_from_status(status(peer="dead"))
    assert lone.peer is False and lone.links == ()
    unconfigured = baseline_from_status(None)
    assert unconfigured.supervisor is False
    assert judge(unconfigured, Probe("inactive"), 1, 300).state == "healthy"


# -- what a booting node does ---------------------------------------------------------------

PENDING = Pending(slot="B", version="0.1.1", from_slot="A", from_version="0.1.0",
                  baseline=FULL, installed_at=1000.0)


def test_an_ordinary_boot_is_marked_good() -> None:
    d = on_boot("A", "0.1.0", None, 2000.0)
    assert (d.kind, d.reason) == ("good", "slot A (0.1.0): an ordinary boot, marked good")


def test_the_first_boot_of_a_new_slot_is_a_trial() -> None:
    d = on_boot("B", "0.1.1", PENDING, 2000.0)
    assert d.kind == "trial"
    assert d.reason == ("slot B runs the new 0.1.1 for the first time: kept only if the node "
                        "is healthy in time")


def test_back_on_the_old_slot_means_the_boot_loader_rolled_back() -> None:
    d = on_boot("A", "0.1.0", PENDING, 2000.0)
    assert d.kind == "rolled-back" and d.bad_slot == "B"
    assert d.failure is not None
    assert d.failure.text() == (
        "update to 0.1.1 FAILED on slot B and was rolled back (running 0.1.0): 0.1.1 on slot "
        "B did not come up to its health check (kernel panic, watchdog reset or power loss): "
        "the boot loader returned to slot A (0.1.0)")


def test_a_reset_during_the_install_is_not_called_a_failed_boot() -> None:
    p = Pending(**{**PENDING.__dict__, "phase": "installing"})
    d = on_boot("A", "0.1.0", p, 2000.0)
    assert d.kind == "rolled-back" and d.bad_slot == "B"
    assert d.reason == ("the installation of 0.1.1 into slot B did not finish (power loss or "
                        "reset while writing it): slot A (0.1.0) booted as before")
    assert Pending.from_json(p.to_json()) == p


def test_a_stale_record_does_not_put_a_good_slot_on_trial() -> None:
    d = on_boot("B", "0.1.2", PENDING, 2000.0)
    assert d.kind == "good"
    assert "stale" in d.reason


# -- bundles ------------------------------------------------------------------------------------

INFO = bundlecheck.BundleInfo("twinbeat-x86-64", "0.1.1", 600 * 2**20)


def refusals(info: bundlecheck.BundleInfo = INFO, running: str = "0.1.0",
             allow_downgrade: bool = False, slot: int | None = 2 * 2**30) -> list[str]:
    return bundlecheck.refusals(info, node_compatible="twinbeat-x86-64", running=running,
                                allow_downgrade=allow_downgrade, slot_bytes=slot,
                                target_exists=slot is not None)


def test_a_newer_compatible_bundle_that_fits_is_accepted() -> None:
    assert refusals() == []


def test_bundle_for_another_architecture_is_refused() -> None:
    info = bundlecheck.BundleInfo("twinbeat-arm64", "0.1.1", 1)
    assert refusals(info) == ["the bundle is for twinbeat-arm64, this node takes "
                              "twinbeat-x86-64 bundles (another architecture or product)"]


def test_older_and_same_versions_need_allow_downgrade() -> None:
    assert refusals(running="0.1.10") == [
        "the bundle is version 0.1.1, older than the running 0.1.10 (--allow-downgrade "
        "installs it anyway)"]
    assert refusals(running="0.1.1") == [
        "this node already runs 0.1.1 (--allow-downgrade reinstalls it)"]
    assert refusals(running="0.1.10", allow_downgrade=True) == []


def test_no_slot_b_or_a_slot_too_small_is_refused() -> None:
    assert refusals(slot=None) == [
        "this node has no other slot to install to (slot B is created at the first boot "
        "when the disk has room for it: 5 GiB or more)"]
    assert refusals(slot=512 * 2**20) == [
        "the bundle's system (600 MiB) does not fit the slot (512 MiB)"]


def test_versions_order_numerically() -> None:
    assert bundlecheck.version_key("0.1.9") < bundlecheck.version_key("0.1.10")
    assert bundlecheck.version_key("0.2.0") > bundlecheck.version_key("0.1.99")


def test_rauc_info_json_of_both_shapes() -> None:
    old = {"compatible": "twinbeat-x86-64", "version": "0.1.1",
           "images": [{"rootfs": {"filename": "rootfs.ext4", "size": 1234}}]}
    new = {"compatible": "twinbeat-x86-64", "version": "0.1.1",
           "images": [{"slot-class": "rootfs", "filename": "rootfs.ext4", "size": 1234}]}
    assert bundlecheck.parse_info(old) == bundlecheck.parse_info(new) == \
        bundlecheck.BundleInfo("twinbeat-x86-64", "0.1.1", 1234)


@pytest.mark.parametrize(("stderr", "start"), [
    ("Failed to verify bundle: signature verification failed: certificate verify error",
     "the bundle's signature does not check out against this node's key"),
    ("Invalid bundle format: Signature data is no valid CMS",
     "the bundle's signature does not check out against this node's key"),
    ("Failed to extract bundle: bundle payload is corrupted",
     "the bundle is corrupted (its contents do not match its signed hash)"),
    ("Compatible mismatch: Expected 'twinbeat-x86-64' but bundle manifest has 'x'",
     "the bundle is for another system"),
    ("Something else", "RAUC refused the bundle; nothing was installed: Something else"),
])
def test_rauc_refusals_become_sentences(stderr: str, start: str) -> None:
    text = bundlecheck.explain_rauc_error(stderr)
    assert text.startswith(start)
    assert "nothing was installed" in text
