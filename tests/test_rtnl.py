"""The supervisor's own rtnetlink dumps agree with iproute2's ``ip -j`` on this host (the
address add/delete requests are exercised for real in tests/test_netns_ipaddr.py)."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from supervisor.drivers import rtnl
from supervisor.drivers.ipaddr import Netlink


def ip_json(*args: str) -> list[dict[str, object]]:
    out = subprocess.run(["ip", "-j", *args], check=True, capture_output=True, text=True)
    return list(json.loads(out.stdout))


def test_links_match_ip_link() -> None:
    expected = {(int(str(e["ifindex"])), str(e["ifname"]), e.get("address"))
                for e in ip_json("link", "show")}
    got = set(rtnl.links())
    assert {(i, n) for i, n, _ in got} == {(i, n) for i, n, _ in expected}
    for index, _name, mac in got:
        want = next(m for i, _n, m in expected if i == index)
        if want not in (None, "00:00:00:00:00:00") or mac not in (None, "00:00:00:00:00:00"):
            assert mac == want


@pytest.mark.parametrize(("family", "flag"), [(socket.AF_INET, "-4"), (socket.AF_INET6, "-6")])
def test_addresses_match_ip_addr(family: int, flag: str) -> None:
    expected = set()
    for link in ip_json(flag, "addr", "show"):
        for a in link.get("addr_info", []):  # type: ignore[attr-defined]
            expected.add((int(str(link["ifindex"])), a["local"], int(a["prefixlen"]),
                          a.get("label") if family == socket.AF_INET else None))
    got = {(i, a, p, label) for i, a, p, label, _flags in rtnl.addresses(family)}
    assert got == expected
    assert got, "this host has no address to compare (loopback is always there)"


def test_main_table_routes_match_ip_route() -> None:
    names = {index: name for index, name, _mac in rtnl.links()}
    expected = set()
    for r in ip_json("-4", "route", "show", "table", "main"):
        if r.get("type", "unicast") != "unicast" or "dev" not in r:
            continue
        dst = "0.0.0.0/0" if r["dst"] == "default" else str(r["dst"])
        if "/" not in dst:
            dst += "/32"
        expected.add((dst, r["dev"], r.get("gateway")))
    got = {(str(route.destination), route.interface,
            None if route.gateway is None else str(route.gateway))
           for route in Netlink().routes(socket.AF_INET)}
    assert got == expected
    assert all(iface in names.values() for _d, iface, _g in got)


def test_a_kernel_refusal_is_an_oserror_with_its_text() -> None:
    lo = next(i for i, name, _mac in rtnl.links() if name == "lo")
    with pytest.raises(OSError) as info:  # EPERM as a user, EADDRNOTAVAIL as root
        rtnl.change_address(False, socket.AF_INET, lo, "127.255.255.254", 32)
    assert info.value.args[1] in ("Operation not permitted", "Cannot assign requested address")
