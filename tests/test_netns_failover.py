"""Real supervisors in network namespaces: cables cut, a primary killed, failback.

Tier 2 (root): two `twinbeat run` processes, a veth crossover, a public bridge with a client
namespace, and a pty null-modem through a relay the test can cut.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import AUTHKEYS, Bed, bed, cluster_config, netns_available

# (a test waits for several failovers in real time, the fixture for the pair to form)
pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]


@pytest.fixture(autouse=True, scope="module")
def _need_netns() -> None:
    # Not a skip: tier 2 runs as root; without namespaces it must fail, loudly.
    assert netns_available(), "tier 2 needs root and `ip netns` (run make test as root)"

FLOAT = "192.168.85.3"
RESOURCES = [f"IPaddr::{FLOAT}/24/eth0", "noop::app"]
DEADTIME = 1.0


def owner(b: Bed, node: str) -> str | None:
    st = b.nodes[node].status()
    value = st["groups"][0]["owner"]
    return None if value is None else str(value)


def has_float(b: Bed, key: str) -> bool:
    return FLOAT in b.ip(b.ns[key], "-o", "addr", "show", "dev", "eth0")


def start_pair(b: Bed, *, failback: bool = True) -> None:
    for node in ("node1", "node2"):
        text = cluster_config(b, node, resources=RESOURCES, deadtime=f"{DEADTIME}s",
                              failback=failback)
        b.start(node, b.write_config(node, text, AUTHKEYS))
    b.wait_for("node1 to own group web", lambda: owner(b, "node1") == "node1"
               and has_float(b, "n1"), timeout=20)
    b.wait_for("node2 to see node1 alive on all links", lambda: all(
        link["state"] == "up" for link in b.nodes["node2"].status()["links"]), timeout=10)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Bed]:
    with bed(tmp_path) as b:
        start_pair(b)
        yield b


def link_states(b: Bed, node: str) -> dict[str, str]:
    return {lk["name"]: lk["state"] for lk in b.nodes[node].status()["links"]}


def test_pair_forms_and_both_see_three_links(pair: Bed):
    for node in ("node1", "node2"):
        st = pair.nodes[node].status()
        assert st["peer"]["state"] == "alive"
        assert link_states(pair, node) == {"serial": "up", "crossover": "up", "public": "up"}
        assert st["groups"][0]["owner"] == "node1"
    assert has_float(pair, "n1") and not has_float(pair, "n2")


def test_cut_crossover_no_failover(pair: Bed):
    pair.ip(pair.ns["n1"], "link", "set", "eth1", "down")
    pair.wait_for("node2 to see the crossover link down",
                  lambda: link_states(pair, "node2")["crossover"] == "down", timeout=5)
    time.sleep(3 * DEADTIME)
    assert owner(pair, "node2") == "node1"
    assert has_float(pair, "n1") and not has_float(pair, "n2")
    assert link_states(pair, "node1")["crossover"] == "down"
    assert link_states(pair, "node2")["serial"] == "up"
    pair.ip(pair.ns["n1"], "link", "set", "eth1", "up")
    pair.wait_for("the crossover link to come back",
                  lambda: link_states(pair, "node2")["crossover"] == "up", timeout=10)


def test_cut_serial_no_failover(pair: Bed):
    assert pair.modem is not None
    pair.modem.cut()
    pair.wait_for("both nodes to see the serial link down", lambda: all(
        link_states(pair, n)["serial"] == "down" for n in ("node1", "node2")), timeout=5)
    time.sleep(3 * DEADTIME)
    assert owner(pair, "node2") == "node1"
    assert not has_float(pair, "n2")
    pair.modem.heal()
    pair.wait_for("the serial link to come back",
                  lambda: link_states(pair, "node2")["serial"] == "up", timeout=10)


def test_cut_serial_and_crossover_no_failover_over_public(pair: Bed):
    assert pair.modem is not None
    pair.modem.cut()
    pair.ip(pair.ns["n2"], "link", "set", "eth1", "down")
    pair.wait_for("two links down", lambda: [
        n for n, s in link_states(pair, "node2").items() if s == "down"
    ] == ["serial", "crossover"], timeout=5)
    time.sleep(3 * DEADTIME)
    assert owner(pair, "node2") == "node1"
    assert not has_float(pair, "n2")


def test_kill_primary_backup_takes_over_then_failback(pair: Bed):
    t_kill = pair.freeze_and_kill("node1")
    took = pair.wait_for("node2 to own the group", lambda: has_float(pair, "n2"), timeout=10,
                         interval=0.01)
    assert took <= DEADTIME + 1.0, f"takeover took {took:.2f} s"
    assert owner(pair, "node2") == "node2"
    st = pair.nodes["node2"].status()
    assert st["peer"]["state"] == "dead"
    assert "silent on all links" in st["peer"]["reason"]
    del t_kill
    # node1 comes back: auto_failback on returns the group to it.
    pair.revive_links("node1")
    pair.start("node1", pair.nodes["node1"].config)
    pair.wait_for("node1 to own the group again", lambda: has_float(pair, "n1")
                  and not has_float(pair, "n2"), timeout=20)
    assert owner(pair, "node2") == "node1"


def test_failback_off_leaves_group_on_backup(tmp_path: Path):
    with bed(tmp_path) as b:
        start_pair(b, failback=False)
        b.freeze_and_kill("node1")
        b.wait_for("node2 to own the group", lambda: has_float(b, "n2"), timeout=10)
        b.revive_links("node1")
        b.start("node1", b.nodes["node1"].config)
        b.wait_for("node1 to rejoin", lambda: b.nodes["node1"].status()["peer"]["state"]
                   == "alive", timeout=20)
        time.sleep(2)
        assert owner(b, "node1") == "node2"
        assert has_float(b, "n2") and not has_float(b, "n1")


def test_admin_standby_and_takeover_via_cli(pair: Bed):
    out = pair.nodes["node1"].cli("standby")
    assert out.returncode == 0, out.stderr
    assert "admin standby: group web should run on node2" in out.stdout
    pair.wait_for("node2 to own the group", lambda: has_float(pair, "n2")
                  and not has_float(pair, "n1"), timeout=10)
    out = pair.nodes["node1"].cli("takeover", "web")
    assert out.returncode == 0, out.stderr
    pair.wait_for("node1 to own the group", lambda: has_float(pair, "n1")
                  and not has_float(pair, "n2"), timeout=10)
    out = pair.nodes["node1"].cli("takeover", "nosuchgroup")
    assert out.returncode == 1
    assert "there is no group 'nosuchgroup'" in out.stdout


def test_clean_shutdown_hands_over_quickly(pair: Bed):
    t0 = time.monotonic()
    assert pair.stop("node1") == 0
    pair.wait_for("node2 to own the group", lambda: has_float(pair, "n2"), timeout=10)
    assert time.monotonic() - t0 < DEADTIME + 2.0
    assert not has_float(pair, "n1")
    assert "left the cluster" in (pair.nodes["node2"].status()["peer"]["reason"] or "")


def test_human_status_output(pair: Bed):
    out = pair.nodes["node2"].cli("status")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "peer node1: alive" in text
    for name in ("serial", "crossover", "public"):
        assert name in text
    assert "owner node1" in text


def test_config_reload_rejects_invalid_and_applies_valid(pair: Bed):
    node = pair.nodes["node2"]
    good = node.config.read_text()
    node.config.write_text(good.replace('deadtime = "1.0s"', 'deadtime = "10ms"'))
    pair.wait_for("the invalid change to be rejected in the log",
                  lambda: "configuration change rejected" in node.log(), timeout=10)
    assert "timing.deadtime: must be more than twice keepalive" in node.log()
    st = node.status()
    assert st["timing"]["deadtime"] == DEADTIME  # the running configuration stays
    assert st["peer"]["state"] == "alive"
    node.config.write_text(good.replace('deadtime = "1.0s"', 'deadtime = "1500ms"'))
    pair.wait_for("the valid change to apply",
                  lambda: node.status()["timing"]["deadtime"] == 1.5, timeout=10)
    assert owner(pair, "node2") == "node1"


def test_check_config_cli(pair: Bed):
    import subprocess
    import sys

    from tests.netns import REPO

    cfg = pair.nodes["node1"].config
    ok = subprocess.run([sys.executable, "-m", "supervisor", "check-config", "--config",
                         str(cfg)], capture_output=True, text=True, cwd=REPO, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "OK (cluster nstest" in ok.stdout
    bad = cfg.with_name("bad.toml")
    bad.write_text(cfg.read_text().replace('name = "node2"', 'name = "node1"'))
    out = subprocess.run([sys.executable, "-m", "supervisor", "check-config", "--config",
                          str(bad)], capture_output=True, text=True, cwd=REPO, check=False)
    assert out.returncode == 1
    assert "node[1].name: node 'node1' is listed twice" in out.stderr
