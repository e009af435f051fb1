"""One pattern per kind of name: every entry point accepts and refuses the same names."""

from __future__ import annotations

import pytest

from firstboot import validate
from firstboot.hardware import Hardware, is_base_unit
from supervisor import names
from supervisor.config import ConfigError, load_config
from supervisor.core import fencing
from supervisor.resource_spec import (
    DrbdSpec,
    FilesystemSpec,
    IPaddrSpec,
    ResourceSpecError,
    ServiceSpec,
    parse_resource,
)

# Names every kind has to get right: ordinary ones, the edges of each rule, and the ways
# the old patterns disagreed (a dot, '@', '+', a leading '-' or '.', a trailing newline).
SAMPLES = [
    "r0", "web", "node1", "linuxha1", "a", "A-b_c.d", "r0.x", "r@0", "r+0", "-r0", ".r0", "_r0",
    "r0-", "r0.", "r 0", "r0\n", "", "r/0", "eth0:1", "eth0.100", "br-lan@x", "n" * 15, "n" * 16,
    "n" * 58, "n" * 59, "n" * 63, "n" * 64, "ü", "nginx.service", "getty@tty1.service",
    "foo:bar.service", "a\\x2db.service",
]

CONFIG = """\
[cluster]
name = "c"
public_interface = "eth0"

[[node]]
name = "n1"
crossover_address = "10.0.0.1"

[[node]]
name = "n2"
crossover_address = "10.0.0.2"

[[link]]
type = "udp"
name = "l1"
interface = "eth1"

[[group]]
name = "g"
preferred = "n1"
resources = ["noop::x"]

[[replicated]]
name = "r0"
disk = "/dev/vdb"
mount_point = "/srv"
"""


def _toml(text: str) -> str:
    """``text`` inside a TOML basic string."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def accepts(text: str, keys: tuple[str, ...]) -> bool:
    """Whether the loader accepts ``text``; a refusal must be about one of ``keys``."""
    try:
        load_config("x.toml", text=text, check_devices=False, check_authkeys=False)
    except ConfigError as exc:
        bad = [p for p in exc.problems if p.severity == "error"]
        assert all(p.key.endswith(keys) for p in bad), exc
        return False
    return True


def config_accepts(old: str, new: str, key: str) -> bool:
    assert old in CONFIG
    return accepts(CONFIG.replace(old, _toml(new), 1), (key,))


def spec_accepts(text: str, kind: type) -> bool:
    try:
        return isinstance(parse_resource(text), kind)
    except ResourceSpecError:
        return False


def wizard_accepts(check, text: str) -> bool:
    try:
        check(text)
    except validate.Invalid:
        return False
    return True


@pytest.mark.parametrize("name", SAMPLES)
def test_names_of_nodes_groups_links_and_the_cluster(name):
    want = names.is_name(name)
    assert config_accepts('name = "c"', f'name = "{name}"', "cluster.name") == want
    assert config_accepts('name = "n2"', f'name = "{name}"', "node[1].name") == want
    assert config_accepts('name = "g"', f'name = "{name}"', "group[0].name") == want
    assert config_accepts('name = "l1"', f'name = "{name}"', "link[0].name") == want
    # the node named by "discard-node NAME" (the second node renamed to it)
    renamed = CONFIG.replace('name = "n2"', f'name = "{_toml(name)}"').replace(
        '[[replicated]]\n', f'[[replicated]]\nsplit_brain = "discard-node {_toml(name)}"\n')
    assert accepts(renamed, ("node[1].name", "split_brain")) == want
    ctx = validate.Context(Hardware())
    if name.strip() == name and name:
        assert wizard_accepts(lambda t: validate.cluster_name(t, ctx), name) == want


@pytest.mark.parametrize("name", SAMPLES)
def test_hostnames_are_node_names(name):
    want = names.is_hostname(name)
    assert not want or names.is_name(name)  # every hostname the wizard sets is a node name
    if name.strip() == name and name.lower() != "localhost":
        assert wizard_accepts(validate._hostname, name) == want


@pytest.mark.parametrize("name", SAMPLES)
def test_interfaces(name):
    want = names.is_interface(name)
    assert config_accepts('public_interface = "eth0"', f'public_interface = "{name}"',
                          "public_interface") == want
    assert config_accepts('interface = "eth1"', f'interface = "{name}"', "interface") == want
    if "/" not in name and "::" not in name and not any(c.isspace() for c in name):
        assert spec_accepts(f"IPaddr::192.168.1.9/24/{name}", IPaddrSpec) == (want or name == "")


@pytest.mark.parametrize("name", SAMPLES)
def test_drbd_resources(name):
    want = names.is_drbd_resource(name)
    assert config_accepts('name = "r0"', f'name = "{name}"', "replicated[0].name") == want
    if "::" not in name and not any(c.isspace() for c in name):
        assert spec_accepts(f"drbddisk::{name}", DrbdSpec) == want
    # the core's check of a fence request (from the handler or off the wire) is the same rule
    core_rule = vars(fencing)["_RESOURCE_RE"]
    assert core_rule is names.DRBD_RESOURCE
    assert (core_rule.match(name) is not None) == want


@pytest.mark.parametrize("name", SAMPLES)
def test_services(name):
    want = names.is_service(name)
    if "::" not in name and name.strip() == name and name and "/" not in name:
        parsed = spec_accepts(name, ServiceSpec)
        # a name that reads as something else (an address) is not a service name anyway
        assert parsed == want
    if name.endswith(".service") and not is_base_unit(name):
        ctx = validate.Context(Hardware(services=(name,)))
        assert wizard_accepts(lambda t: validate.services(t, ctx), name) == want


MOUNT_POINTS = ["/srv", "/srv/", "/srv//", "/var/lib/mysql", "/", "srv", "/srv/../etc",
                "/srv/./x", "/a b", "/a:b", "/a~b", "/data@x", "/x=y,z", "/ü", "/srv\n"]


@pytest.mark.parametrize("path", MOUNT_POINTS)
def test_mount_points(path):
    want = names.mount_point(path) is not None
    assert config_accepts('mount_point = "/srv"', f'mount_point = "{path}"', "mount_point") \
        == want
    if not any(c.isspace() for c in path) and "::" not in path:
        assert spec_accepts(f"Filesystem::/dev/drbd0::{path}::ext4", FilesystemSpec) == want


@pytest.mark.parametrize("path", ["/dev/vdb", "/dev/disk/by-id/ata-X_1", "/dev/../etc/passwd",
                                  "/dev/./vdb", "vdb", "/devx/vdb", "/dev/vd b"])
def test_dev_paths(path):
    assert config_accepts('disk = "/dev/vdb"', f'disk = "{path}"', "disk") \
        == names.is_dev_path(path)


def test_patterns_check_the_whole_text():
    for pattern in (names.NAME, names.HOSTNAME, names.INTERFACE, names.DRBD_RESOURCE,
                    names.SERVICE):
        assert pattern.match("r0\n") is None
        assert pattern.match("r0 x") is None
