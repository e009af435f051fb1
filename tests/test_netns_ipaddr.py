"""The floating address in network namespaces: alias label, takeover seen by a client through
gratuitous ARP / unsolicited NA (the client sends nothing), failback, duplicate detection.

Topology: a bridge in its own namespace; n1, n2 and a client attached by veth.
"""

from __future__ import annotations

import json
import os

import pytest

from supervisor.drivers.ipaddr import routes_from_ip_json
from tests.netns_util import Lan, addresses, neighbour_mac, sh, udp_probe, wait_for

# (a test waits for several failovers in real time, the fixture for the pair to form)
pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]

MAC1, MAC2, MACC = "02:00:00:00:01:01", "02:00:00:00:02:01", "02:00:00:00:0c:01"
FLOAT4 = "10.251.0.50"
FLOAT6 = "fd00:251::50"
TAKEOVER = {"garp_count": 5, "garp_interval": 0.2, "garp_repeat_delay": 2.0,
            "garp_refresh": 0.0}


class Topology(Lan):
    def __init__(self) -> None:
        super().__init__()
        try:
            self.n1 = self.node("n1", MAC1, "10.251.0.1/24", "fd00:251::1/64")
            self.n2 = self.node("n2", MAC2, "10.251.0.2/24", "fd00:251::2/64")
            self.cl = self.node("cl", MACC, "10.251.0.100/24", "fd00:251::100/64")
        except BaseException:
            self.close()
            raise


@pytest.fixture
def lan():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    with Topology() as lan:
        yield lan


def _ok(answer):
    assert answer["ok"], answer
    return answer


def _held(ns: str, address: str):
    return [a for a in addresses(ns) if a["local"] == address]


def test_routes_read_by_netlink_match_ip_route(lan):
    h = lan.helper(lan.n1)
    for family, flag in ((4, "-4"), (6, "-6")):
        mine = _ok(h.cmd(op="routes", family=family))["result"]
        data = json.loads(sh("ip", "-n", lan.n1, flag, "-j", "route", "show", "table", "main"))
        theirs = routes_from_ip_json(data, 2 if family == 4 else 10)
        assert sorted(mine) == sorted([str(r.destination), r.interface, r.metric]
                                      for r in theirs)
        assert mine  # the connected route is there


def test_address_flags_above_the_first_byte_match_ip_addr(lan):
    """The monitor's address dump (drivers.netlink's AddressDump) reads the flags of the
    32-bit IFA_FLAGS attribute, not only ifaddrmsg's 8-bit field: addresses added with
    noprefixroute (0x200) read as ``ip -j`` shows them (the host's own addresses, in
    tests/test_netlink.py, may have no flag above the first byte)."""
    from tests.test_netlink import IFA_F_PERMANENT, IP_FLAGS

    sh("ip", "-n", lan.n1, "addr", "add", "10.251.0.9/24", "dev", "eth0", "noprefixroute")
    sh("ip", "-n", lan.n1, "addr", "add", "fd00:251::9/64", "dev", "eth0", "noprefixroute",
       "nodad")
    h = lan.helper(lan.n1)
    mask = IFA_F_PERMANENT | sum(IP_FLAGS.values())
    for family, flag, mine in ((4, "-4", "10.251.0.9"), (6, "-6", "fd00:251::9")):
        expected = {}
        for link in json.loads(sh("ip", "-n", lan.n1, flag, "-j", "addr", "show")):
            for a in link.get("addr_info", []):
                bits = sum(v for k, v in IP_FLAGS.items() if a.get(k)) | (
                    0 if a.get("dynamic") else IFA_F_PERMANENT)
                if family == 6 and a.get("temporary"):
                    bits |= 0x01
                expected[(link["ifindex"], a["local"])] = bits
        got = {(i, a): flags & mask
               for i, a, _p, _label, flags in _ok(h.cmd(op="addresses", family=family))["result"]}
        assert got == expected
        # (the IPv4 one is also secondary: eth0 holds an address of the same subnet)
        assert [bits & IP_FLAGS["noprefixroute"] for (_i, a), bits in got.items()
                if a == mine] == [IP_FLAGS["noprefixroute"]]


def test_ipv4_takeover_moves_client_neighbour_entry(lan, record_property):
    h1 = lan.helper(lan.n1, TAKEOVER)
    h2 = lan.helper(lan.n2, TAKEOVER)
    spec = f"IPaddr::{FLOAT4}"

    _ok(h1.cmd(op="start", spec=spec))
    held = _held(lan.n1, FLOAT4)
    assert len(held) == 1
    assert held[0]["prefixlen"] == 24  # from the connected route
    assert held[0]["label"] == "eth0:0"
    assert held[0]["broadcast"] == "10.251.0.255"
    assert _ok(h1.cmd(op="status", spec=spec))["result"] is True
    # a second floating address gets the next label
    _ok(h1.cmd(op="start", spec="IPaddr::10.251.0.51/24"))
    assert _held(lan.n1, "10.251.0.51")[0]["label"] == "eth0:1"
    _ok(h1.cmd(op="stop", spec="IPaddr::10.251.0.51/24"))

    # the client learns the address once (its only traffic)
    assert udp_probe(lan.cl, FLOAT4)
    assert neighbour_mac(lan.cl, FLOAT4) == MAC1

    # takeover: n1 releases, n2 acquires; the client's entry must follow without traffic
    _ok(h1.cmd(op="stop", spec=spec))
    assert _held(lan.n1, FLOAT4) == []
    assert _ok(h1.cmd(op="status", spec=spec))["result"] is False
    _ok(h1.cmd(op="stop", spec=spec))  # idempotent
    _ok(h2.cmd(op="start", spec=spec))
    took = wait_for(lambda: neighbour_mac(lan.cl, FLOAT4) == MAC2, timeout=1.0)
    assert took is not None, f"client still maps {FLOAT4} to {neighbour_mac(lan.cl, FLOAT4)}"
    record_property("ipv4_neigh_update_s", took)
    print(f"client neighbour entry moved to n2 {took * 1000:.0f} ms after start() returned")
    _ok(h2.cmd(op="start", spec=spec))  # idempotent
    assert len(_held(lan.n2, FLOAT4)) == 1

    # failback: back to n1 and the client follows again
    _ok(h2.cmd(op="stop", spec=spec))
    _ok(h1.cmd(op="start", spec=spec))
    took = wait_for(lambda: neighbour_mac(lan.cl, FLOAT4) == MAC1, timeout=1.0)
    assert took is not None
    print(f"failback: client entry back on n1 after {took * 1000:.0f} ms")
    # and the address answers from n1
    assert udp_probe(lan.cl, FLOAT4)


def test_the_monitor_asks_the_kernel_again_only_after_an_address_changed(lan):
    """The monitor's answer stands while the kernel reports no address change (AddressWatch:
    no dump); an address deleted or added behind the agent's back, on any interface, is
    seen at the next check (a dump)."""
    h = lan.helper(lan.n1)
    spec = f"IPaddr::{FLOAT4}"
    _ok(h.cmd(op="start", spec=spec))
    assert _ok(h.cmd(op="known", spec=spec))["result"] is None  # never asked: not known
    assert _ok(h.cmd(op="status", spec=spec))["result"] is True
    dumps = _ok(h.cmd(op="dumps"))["result"]
    for _ in range(3):
        assert _ok(h.cmd(op="status", spec=spec))["result"] is True
        assert _ok(h.cmd(op="known", spec=spec))["result"] is True
    assert _ok(h.cmd(op="dumps"))["result"] == dumps  # nothing changed: no dump
    sh("ip", "-n", lan.n1, "addr", "del", f"{FLOAT4}/24", "dev", "eth0")
    assert _ok(h.cmd(op="known", spec=spec))["result"] is None  # changed: ask
    assert _ok(h.cmd(op="status", spec=spec))["result"] is False
    assert _ok(h.cmd(op="dumps"))["result"] == dumps + 1
    assert _ok(h.cmd(op="known", spec=spec))["result"] is False
    assert _ok(h.cmd(op="status", spec=spec))["result"] is False
    sh("ip", "-n", lan.n1, "addr", "add", f"{FLOAT4}/24", "dev", "eth0", "label", "eth0:0")
    assert _ok(h.cmd(op="status", spec=spec))["result"] is True
    sh("ip", "-n", lan.n1, "addr", "add", "fd00:251::77/64", "dev", "eth0", "nodad")
    assert _ok(h.cmd(op="status", spec=spec))["result"] is True
    assert _ok(h.cmd(op="dumps"))["result"] == dumps + 3
    _ok(h.cmd(op="stop", spec=spec))
    assert _held(lan.n1, FLOAT4) == []
    assert _ok(h.cmd(op="status", spec=spec))["result"] is False


def test_duplicate_detection_refuses_an_address_in_use(lan):
    h1 = lan.helper(lan.n1, TAKEOVER)
    h2 = lan.helper(lan.n2, TAKEOVER)
    spec = f"IPaddr::{FLOAT4}"
    _ok(h2.cmd(op="start", spec=spec))
    answer = h1.cmd(op="start", spec=spec, check_duplicates=True)
    assert not answer["ok"]
    assert answer["error"] == f"{FLOAT4} is already in use by MAC {MAC2} on eth0"
    assert _held(lan.n1, FLOAT4) == []
    # a free address passes the probe (our own probes are not mistaken for an answer)
    _ok(h1.cmd(op="start", spec="IPaddr::10.251.0.60", check_duplicates=True))
    assert len(_held(lan.n1, "10.251.0.60")) == 1
    # without the check (a takeover decided by the cluster) the address is added
    _ok(h2.cmd(op="stop", spec=spec))
    _ok(h1.cmd(op="start", spec=spec, check_duplicates=False))
    assert len(_held(lan.n1, FLOAT4)) == 1


def test_ipv6_takeover_with_unsolicited_na(lan):
    h1 = lan.helper(lan.n1, TAKEOVER)
    h2 = lan.helper(lan.n2, TAKEOVER)
    spec = f"IPaddr::{FLOAT6}"
    _ok(h1.cmd(op="start", spec=spec))
    held = _held(lan.n1, FLOAT6)
    assert len(held) == 1 and held[0]["prefixlen"] == 64
    assert udp_probe(lan.cl, FLOAT6)
    assert neighbour_mac(lan.cl, FLOAT6) == MAC1
    _ok(h1.cmd(op="stop", spec=spec))
    assert _held(lan.n1, FLOAT6) == []
    _ok(h2.cmd(op="start", spec=spec))
    took = wait_for(lambda: neighbour_mac(lan.cl, FLOAT6) == MAC2, timeout=1.0)
    assert took is not None, f"client still maps {FLOAT6} to {neighbour_mac(lan.cl, FLOAT6)}"
    print(f"IPv6: client neighbour entry moved to n2 after {took * 1000:.0f} ms")
    assert udp_probe(lan.cl, FLOAT6)


def test_ipv6_duplicate_detection(lan):
    h1 = lan.helper(lan.n1, TAKEOVER)
    h2 = lan.helper(lan.n2, TAKEOVER)
    spec = f"IPaddr::{FLOAT6}"
    _ok(h2.cmd(op="start", spec=spec))
    answer = h1.cmd(op="start", spec=spec, check_duplicates=True)
    assert not answer["ok"]
    assert "already in use on eth0" in answer["error"]
    assert _held(lan.n1, FLOAT6) == []
    _ok(h1.cmd(op="start", spec="IPaddr::fd00:251::60", check_duplicates=True))
    held = _held(lan.n1, "fd00:251::60")
    assert len(held) == 1 and "tentative" not in held[0]


@pytest.mark.parametrize("floating", [FLOAT4, FLOAT6])
def test_without_announcements_the_client_keeps_the_old_entry(lan, floating):
    """Control: with garp_count = 0 the client's entry does not move by itself, so the tests
    above measure our announcements, not something the kernel does on its own."""
    quiet = dict(TAKEOVER, garp_count=0)
    h1 = lan.helper(lan.n1, quiet)
    h2 = lan.helper(lan.n2, quiet)
    spec = f"IPaddr::{floating}"
    _ok(h1.cmd(op="start", spec=spec))
    assert udp_probe(lan.cl, floating)
    assert neighbour_mac(lan.cl, floating) == MAC1
    _ok(h1.cmd(op="stop", spec=spec))
    _ok(h2.cmd(op="start", spec=spec))
    assert wait_for(lambda: neighbour_mac(lan.cl, floating) != MAC1, timeout=1.5) is None
