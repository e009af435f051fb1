"""Pure parts of the IPaddr agent: route choice, prefix, broadcast and alias label."""

from __future__ import annotations

import ipaddress
import json
import socket
from pathlib import Path

import pytest

from supervisor.drivers.agent_base import AgentError
from supervisor.drivers.ipaddr import (
    AddressEntry,
    Route,
    next_label,
    plan_address,
    routes_from_ip_json,
    select_route,
)
from supervisor.resource_spec import IPaddrSpec, default_broadcast, parse_resource

FIXTURES = Path(__file__).parent / "fixtures" / "routes"


def table(name: str) -> list[Route]:
    family = socket.AF_INET6 if name.startswith("ipv6") else socket.AF_INET
    return routes_from_ip_json(json.loads((FIXTURES / f"{name}.json").read_text()), family)


def ipspec(text: str) -> IPaddrSpec:
    spec = parse_resource(text)
    assert isinstance(spec, IPaddrSpec)
    return spec


def ip(text: str):
    return ipaddress.ip_address(text)


def test_fixture_parsing_keeps_unicast_routes_only():
    routes = table("ties")
    assert [(str(r.destination), r.interface, r.metric) for r in routes] == [
        ("0.0.0.0/0", "eth2", 0),
        ("172.16.5.0/24", "eth2", 20),
        ("172.16.5.0/24", "eth1", 10),
        ("172.16.5.0/24", "eth0", 10),
    ]
    assert routes[0].gateway == ip("172.16.5.1")
    assert routes[0].is_default


def test_connected_route_beats_default():
    route = select_route(ip("192.168.85.3"), table("appliance"))
    assert route is not None
    assert (route.interface, route.destination.prefixlen) == ("eth0", 24)
    route = select_route(ip("10.0.0.2"), table("appliance"))
    assert route is not None and route.interface == "eth1"


def test_default_route_is_last_resort():
    route = select_route(ip("8.8.8.8"), table("appliance"))
    assert route is not None and route.is_default and route.interface == "eth0"


def test_no_route():
    assert select_route(ip("8.8.8.8"), table("ipv6")) is None
    assert select_route(ip("10.1.2.3"), [r for r in table("appliance") if not r.is_default]) is None


def test_more_specific_prefix_beats_lower_metric():
    # 192.168.0.0/16 via enp2s0 has metric 0, the connected /24 on enp1s0 metric 100: the kernel
    # sends 192.168.1.x out of enp1s0, so the floating address belongs there.
    route = select_route(ip("192.168.1.50"), table("dhcp_metrics"))
    assert route is not None
    assert (route.interface, str(route.destination)) == ("enp1s0", "192.168.1.0/24")
    # elsewhere in the /16 the static route is the only (non-default) cover
    route = select_route(ip("192.168.7.9"), table("dhcp_metrics"))
    assert route is not None and route.interface == "enp2s0"


def test_host_route_is_most_specific():
    route = select_route(ip("135.9.214.51"), table("redhat6"))
    assert route is not None and route.destination.prefixlen == 32
    route = select_route(ip("135.9.214.60"), table("redhat6"))
    assert route is not None and route.destination.prefixlen == 24


def test_equal_prefix_lowest_metric_then_first_found():
    route = select_route(ip("172.16.5.9"), table("ties"))
    # eth1 and eth0 both have metric 10 (eth2 has 20): the first found of the two wins
    assert route is not None and route.interface == "eth1"
    reordered = list(reversed(table("ties")))
    route = select_route(ip("172.16.5.9"), reordered)
    assert route is not None and route.interface == "eth0"


def test_ipv6_route_selection():
    routes = table("ipv6")
    route = select_route(ip("2001:db8:85::50"), routes)
    assert route is not None and (route.interface, route.destination.prefixlen) == ("eth0", 64)
    route = select_route(ip("fd00:c0::7"), routes)
    assert route is not None and route.interface == "eth1"
    # the IPv4 routes never match an IPv6 address
    assert select_route(ip("2001:db8:85::50"), table("appliance")) is None


@pytest.mark.parametrize(
    ("address", "prefix", "broadcast"),
    [
        ("192.168.85.3", 24, "192.168.85.255"),
        ("192.168.85.3", 27, "192.168.85.31"),  # the seed's example
        ("10.1.2.3", 8, "10.255.255.255"),
        ("172.16.5.200", 25, "172.16.5.255"),
        ("172.16.5.100", 25, "172.16.5.127"),
    ],
)
def test_default_broadcast(address, prefix, broadcast):
    assert default_broadcast(ipaddress.IPv4Address(address), prefix) == ip(broadcast)


def test_plan_from_routes():
    spec = ipspec("IPaddr::192.168.85.3")
    plan = plan_address(spec, table("appliance"), [])
    assert (plan.interface, plan.prefix, str(plan.broadcast), plan.label) == (
        "eth0", 24, "192.168.85.255", "eth0:0")


def test_plan_explicit_prefix_and_broadcast():
    spec = ipspec("192.168.85.3/27/192.168.85.16")
    plan = plan_address(spec, table("appliance"), [])
    assert (plan.interface, plan.prefix, str(plan.broadcast)) == ("eth0", 27, "192.168.85.16")
    spec = ipspec("192.168.85.3/27")
    plan = plan_address(spec, table("appliance"), [])
    assert str(plan.broadcast) == "192.168.85.31"


def test_plan_explicit_interface_uses_its_routes():
    spec = ipspec("IPaddr::172.16.5.9/25/eth2")
    plan = plan_address(spec, table("ties"), [])
    assert (plan.interface, plan.prefix) == ("eth2", 25)
    # interface given, prefix from that interface's route
    spec_no_prefix = ipspec("IPaddr::172.16.5.9//eth2")
    plan = plan_address(spec_no_prefix, table("ties"), [])
    assert (plan.interface, plan.prefix) == ("eth2", 24)


def test_plan_refuses_default_route_without_prefix():
    with pytest.raises(AgentError, match=r"only the default route covers 8\.8\.8\.8"):
        plan_address(ipspec("IPaddr::8.8.8.8"), table("appliance"), [])
    plan = plan_address(ipspec("IPaddr::8.8.8.8/24"), table("appliance"), [])
    assert (plan.interface, plan.prefix) == ("eth0", 24)


def test_plan_refuses_without_any_route():
    routes = [r for r in table("appliance") if not r.is_default]
    with pytest.raises(AgentError, match=r"no route covers 8\.8\.8\.8"):
        plan_address(ipspec("IPaddr::8.8.8.8"), routes, [])


def test_plan_ipv6_has_no_label_or_broadcast():
    plan = plan_address(ipspec("IPaddr::2001:db8:85::50"), table("ipv6"), [])
    assert (plan.interface, plan.prefix, plan.broadcast, plan.label) == ("eth0", 64, None, None)


def test_ipv6_resource_forms_parse():
    # IPv6 addresses contain "::", the resource separator (resource_spec extended for this)
    spec = ipspec("IPaddr::2001:db8:85::50/64/eth0")
    assert (str(spec.address), spec.prefix, spec.interface) == ("2001:db8:85::50", 64, "eth0")
    spec = ipspec("fd00::50")
    assert str(spec.address) == "fd00::50"
    with pytest.raises(ValueError):
        parse_resource("IPaddr::10.0.0.1::extra")


def test_plan_point_to_point_prefixes_have_no_broadcast():
    plan = plan_address(ipspec("10.0.0.2/31"), table("appliance"), [])
    assert plan.broadcast is None


def test_label_allocation():
    assert next_label("eth0", []) == "eth0:0"
    assert next_label("eth0", ["eth0:0", "eth0:1", "eth0:3"]) == "eth0:2"
    assert next_label("eth0", ["eth1:0"]) == "eth0:0"
    assert next_label("enp0s31f6", ["enp0s31f6:0"]) == "enp0s31f6:1"
    # "IFACE:N" must fit in 15 characters
    assert next_label("enx001122334455", []) is None
    assert next_label("abcdefghijkl", []) == "abcdefghijkl:0"
    assert next_label("abcdefghijkl", [f"abcdefghijkl:{i}" for i in range(10)]) == (
        "abcdefghijkl:10")
    assert next_label("abcdefghijklm", []) == "abcdefghijklm:0"
    assert next_label("abcdefghijklm", [f"abcdefghijklm:{i}" for i in range(10)]) is None


def test_plan_label_skips_used_labels_on_that_interface():
    addrs = [
        AddressEntry(2, "eth0", ip("192.168.85.1"), 24, "eth0"),
        AddressEntry(2, "eth0", ip("192.168.85.7"), 24, "eth0:0"),
        AddressEntry(3, "eth1", ip("10.0.0.1"), 30, "eth1:1"),
    ]
    plan = plan_address(ipspec("192.168.85.3"), table("appliance"), addrs)
    assert plan.label == "eth0:1"
