"""The exports checked by the real tools, from Debian's packages (`make deps` installs them; a
missing tool fails these tests):

* ``crm_verify --xml-file cib.xml`` (pacemaker-cli-utils) accepts every exported CIB. It checks
  the schema, the ID references and the scheduler's view of the configuration; it does NOT look
  for the resource agents (an unknown agent passes), so
* ``crm_resource --show-metadata`` checks that every OCF agent the CIB names is installed
  (resource-agents, pacemaker-resource-agents, drbd-utils) and has every parameter we set;
* ``corosync -t`` (corosync) parses every exported corosync.conf as each node would: in a
  private mount and UTS namespace, with the file in /etc/corosync, a key from corosync-keygen
  (as README.txt tells the user) and the node's name as hostname (corosync finds the local
  node by name); where the export uses node names as addresses, an /etc/hosts for them too;
* ``crm_simulate`` (the Pacemaker scheduler on a file) shows that the exported constraints do
  what twinbeat did: failover, failback with auto_failback, staying put without it, the
  restart policy, and the ping rule.
These need root (unshare), as the rest of the suite does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from supervisor.cli import main
from supervisor.pacemaker import export
from tests.pacemaker_support import CASES, HEARTBEAT, case_export, load, write

TOOLS = {  # tool -> the Debian package scripts/deps.sh installs it from
    "crm_verify": "pacemaker-cli-utils",
    "crm_resource": "pacemaker-cli-utils",
    "crm_simulate": "pacemaker-cli-utils",
    "corosync": "corosync",
    "corosync-keygen": "corosync",
    "unshare": "util-linux",
    "cibadmin": "pacemaker-cli-utils",
    "pcs": "pcs",
}


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    assert path is not None, f"{name} is missing: `make deps` installs it ({TOOLS[name]})"
    return path


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          check=False)


def crm_verify(path: Path) -> subprocess.CompletedProcess[str]:
    return run(tool("crm_verify"), "--xml-file", str(path))


def corosync_check(conf: Path, hostname: str, hosts: dict[str, str] | None = None
                   ) -> subprocess.CompletedProcess[str]:
    """``corosync -t`` on CONF installed as /etc/corosync/corosync.conf on node HOSTNAME."""
    script = [
        "set -e",
        "mount -t tmpfs twinbeat-test /etc/corosync",
        f"cp {conf} /etc/corosync/corosync.conf",
        f"{tool('corosync-keygen')} >/dev/null",
        f"hostname {hostname}",
    ]
    if hosts:
        hosts_file = conf.parent / "hosts"
        hosts_file.write_text("127.0.0.1 localhost\n" + "".join(
            f"{addr} {name}\n" for name, addr in hosts.items()))
        script.append(f"mount --bind {hosts_file} /etc/hosts")
    script.append(f"exec {tool('corosync')} -t")
    return run(tool("unshare"), "--mount", "--uts", "sh", "-c", "\n".join(script))


# --------------------------------------------------------------------------------------------
# crm_verify


@pytest.mark.parametrize("name", sorted(CASES))
def test_crm_verify_accepts_the_cib(tmp_path, name):
    write(case_export(name), tmp_path)
    r = crm_verify(tmp_path / "cib.xml")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_crm_verify_can_refuse(tmp_path):
    """The check above can fail: the CIB without its DRBD clone has dangling references."""
    text = case_export("example").files["cib.xml"]
    root = ET.fromstring(text)
    resources = root.find("configuration/resources")
    assert resources is not None
    clone = resources.find("clone[@id='drbd-r0-clone']")
    assert clone is not None
    resources.remove(clone)
    (tmp_path / "cib.xml").write_text(ET.tostring(root, encoding="unicode"))
    r = crm_verify(tmp_path / "cib.xml")
    assert r.returncode != 0
    assert 'references an unknown ID "drbd-r0-clone"' in r.stderr
    # and stonith-enabled=true without a fencing device is refused, hence the export's false
    enabled = text.replace('name="stonith-enabled" value="false"',
                           'name="stonith-enabled" value="true"')
    (tmp_path / "cib.xml").write_text(enabled)
    assert crm_verify(tmp_path / "cib.xml").returncode != 0


# --------------------------------------------------------------------------------------------
# The OCF agents and their parameters


def metadata_parameters(agent: str) -> set[str]:
    r = run(tool("crm_resource"), "--show-metadata", agent)
    assert r.returncode == 0, f"{agent}: {r.stderr}"
    root = ET.fromstring(r.stdout)
    return {p.get("name", "") for p in root.findall("parameters/parameter")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_ocf_agents_exist_with_the_parameters_set(name):
    root = ET.fromstring(case_export(name).files["cib.xml"])
    seen = 0
    for prim in root.iter("primitive"):
        if prim.get("class") != "ocf":
            continue
        agent = f"ocf:{prim.get('provider')}:{prim.get('type')}"
        params = {p.get("name") for p in prim.findall("instance_attributes/nvpair")}
        assert params <= metadata_parameters(agent), agent
        seen += 1
    assert seen == len([p for p in root.iter("primitive") if p.get("class") == "ocf"])


# --------------------------------------------------------------------------------------------
# corosync -t


def node_hosts(conf: str) -> dict[str, str] | None:
    """An /etc/hosts for an export whose only link is the node names (else None)."""
    addrs = re.findall(r"ring0_addr: (\S+)", conf)
    if all(re.fullmatch(r"[0-9.:a-f]+", a) for a in addrs):
        return None
    return {n: f"192.0.2.{i}" for i, n in enumerate(addrs, start=1)}


@pytest.mark.parametrize("name", sorted(CASES))
def test_corosync_accepts_the_conf_on_each_node(tmp_path, name):
    result = case_export(name)
    write(result, tmp_path)
    nodes = re.findall(r"^\s+name: (\S+)$", result.files["corosync.conf"], re.MULTILINE)
    assert len(nodes) == 2
    for node in nodes:
        r = corosync_check(tmp_path / "corosync.conf", node,
                           node_hosts(result.files["corosync.conf"]))
        assert r.returncode == 0, f"{node}: {r.stdout}{r.stderr}"


def test_corosync_can_refuse(tmp_path):
    """corosync -t does check: a host that is not a node, a broken value, a missing address."""
    write(case_export("example"), tmp_path)
    conf = tmp_path / "corosync.conf"
    r = corosync_check(conf, "stranger")
    assert r.returncode != 0 and "No valid name found for local host" in r.stdout + r.stderr
    good = conf.read_text()
    conf.write_text(good.replace("token: 1000", "token: soon"))
    r = corosync_check(conf, "node1")
    assert r.returncode != 0 and "totem.token" in r.stdout + r.stderr
    conf.write_text(good.replace("        ring1_addr: 192.168.85.2\n", ""))
    r = corosync_check(conf, "node1")
    assert r.returncode != 0 and "Not all nodes have the same number of links" in \
        r.stdout + r.stderr
    # the heartbeat fixtures' names resolve only through the hosts file the test provides
    write(case_export("heartbeat-002"), tmp_path)
    r = corosync_check(conf, "clustnode1")
    assert r.returncode != 0 and "clustnode" in r.stdout + r.stderr


# --------------------------------------------------------------------------------------------
# The command end to end: `twinbeat import-heartbeat` then `twinbeat export pacemaker`


@pytest.mark.parametrize("seed", sorted(p.name for p in HEARTBEAT.iterdir()))
def test_import_then_export_then_verify(tmp_path, seed):
    folder = HEARTBEAT / seed
    config = tmp_path / "etc" / "cluster.toml"
    config.parent.mkdir()
    args = ["import-heartbeat", "--ha-cf", str(folder / "ha.cf"), "--haresources",
            str(folder / "haresources"), "--authkeys", str(folder / "authkeys"),
            "--output", str(config)]
    if seed.startswith("000_"):
        args.append("--unflatten")
    assert main(args) == 0
    out = tmp_path / "pacemaker"
    assert main(["export", "pacemaker", "--config", str(config), "--output", str(out)]) == 0
    r = crm_verify(out / "cib.xml")
    assert (r.returncode, r.stderr) == (0, "")
    conf = (out / "corosync.conf").read_text()
    node = re.search(r"name: (\S+)", conf)
    assert node is not None
    r = corosync_check(out / "corosync.conf", node.group(1), node_hosts(conf))
    assert r.returncode == 0, r.stdout + r.stderr


# --------------------------------------------------------------------------------------------
# crm_simulate: the scheduler places the groups as twinbeat did


def pair(auto_failback: bool, group: str = "") -> str:
    return (
        f'[cluster]\nname = "sim"\nauto_failback = {str(auto_failback).lower()}\n'
        '[[node]]\nname = "a"\naddress = "192.168.1.1"\n'
        '[[node]]\nname = "b"\naddress = "192.168.1.2"\n'
        '[[link]]\ntype = "udp"\ninterface = "eth0"\n'
        '[[group]]\nname = "web"\npreferred = "a"\n'
        'resources = ["IPaddr::192.168.1.10/24/eth0", "noop::x"]\n' + group
    )


class Sim:
    """crm_simulate on a file: each step starts from the state the previous one left."""

    def __init__(self, folder: Path, text: str) -> None:
        self.folder = folder
        self.step = 0
        self.actions: list[tuple[str, str, str]] = []  # (resource, action, node), in order
        cib = export(load(text)).files["cib.xml"]
        # a running two_node cluster is quorate with one node: the live CIB says so itself
        self.path = folder / "sim-0.xml"
        self.path.write_text(cib.replace("<cib ", '<cib have-quorum="1" ', 1))

    def run(self, *args: str) -> dict[str, str]:
        self.step += 1
        out = self.folder / f"sim-{self.step}.xml"
        r = run(tool("crm_simulate"), "--xml-file", str(self.path), "--simulate",
                "--save-output", str(out), *args)
        assert r.returncode == 0, r.stdout + r.stderr
        self.path = out
        self.actions = re.findall(r"Resource action: +(\S+) +(\S+) on (\S+)",
                                  r.stdout.split("Executing Cluster Transition:")[-1])
        revised = r.stdout.split("Revised Cluster Status:")[1]
        return dict(re.findall(r"\* (\S+)\s+\(\S+\):\s+Started (\S+)", revised))

    def set_attribute(self, node: str, name: str, value: str) -> None:
        root = ET.parse(self.path).getroot()
        state = root.find(f"status/node_state[@uname='{node}']")
        assert state is not None
        nid = state.get("id", "")
        attrs = ET.SubElement(ET.SubElement(state, "transient_attributes", id=nid),
                              "instance_attributes", id=f"status-{nid}")
        ET.SubElement(attrs, "nvpair", id=f"status-{nid}-{name}", name=name, value=value)
        self.path.write_text(ET.tostring(root, encoding="unicode"))


def test_failover_and_failback_with_auto_failback(tmp_path):
    sim = Sim(tmp_path, pair(auto_failback=True))
    assert sim.run("--node-up", "a", "--node-up", "b") == {"web-ip": "a", "web-noop-x": "a"}
    assert sim.run("--node-down", "a") == {"web-ip": "b", "web-noop-x": "b"}
    assert sim.run("--node-up", "a") == {"web-ip": "a", "web-noop-x": "a"}  # back home


def test_no_failback_without_auto_failback(tmp_path):
    sim = Sim(tmp_path, pair(auto_failback=False))
    assert sim.run("--node-up", "a", "--node-up", "b") == {"web-ip": "a", "web-noop-x": "a"}
    assert sim.run("--node-down", "a") == {"web-ip": "b", "web-noop-x": "b"}
    assert sim.run("--node-up", "a") == {"web-ip": "b", "web-noop-x": "b"}  # stays


@pytest.mark.parametrize("max_restarts", [0, 1, 3])
def test_restart_policy(tmp_path, max_restarts):
    """twinbeat restarts in place max_restarts times and gives the group up at the next failure;
    migration-threshold = max_restarts + 1 does the same."""
    sim = Sim(tmp_path, pair(True, f"max_restarts = {max_restarts}\n"))
    assert sim.run("--node-up", "a", "--node-up", "b")["web-noop-x"] == "a"
    for _ in range(max_restarts):
        # the monitor (10 s) finds the resource not running (7) on a: restarted there
        placed = sim.run("--op-inject", "web-noop-x_monitor_10000@a=7")
        assert placed == {"web-ip": "a", "web-noop-x": "a"}
    placed = sim.run("--op-inject", "web-noop-x_monitor_10000@a=7")
    assert placed == {"web-ip": "b", "web-noop-x": "b"}


def test_drbd_is_promoted_where_the_group_runs_before_it_starts(tmp_path):
    text = CASES["example"]().replace('ping_nodes = ["192.168.85.254"]', "")
    sim = Sim(tmp_path, text)
    assert sim.run("--node-up", "node1", "--node-up", "node2") == {}  # no promotion score yet
    for node in ("node1", "node2"):  # what ocf:linbit:drbd says of two UpToDate replicas
        sim.set_attribute(node, "master-drbd-r0", "10000")
    group = {"web-ip": "node1", "web-fs": "node1", "web-httpd": "node1"}
    assert sim.run() == group
    order = sim.actions.index
    assert order(("drbd-r0", "promote", "node1")) < order(("web-ip", "start", "node1"))
    # node1 dies: node2's replica is promoted, then the group starts there
    assert sim.run("--node-down", "node1") == {k: "node2" for k in group}
    order = sim.actions.index
    assert order(("drbd-r0", "promote", "node2")) < order(("web-ip", "start", "node2"))
    assert ("drbd-r0", "promote", "node1") not in sim.actions


def test_ping_rule_moves_the_group_to_the_node_that_sees_the_world(tmp_path):
    text = pair(auto_failback=True).replace("[[node]]", 'ping_nodes = ["192.168.1.254"]\n'
                                            "[[node]]", 1)
    sim = Sim(tmp_path, text)
    assert sim.run("--node-up", "a", "--node-up", "b")["web-ip"] == "a"
    sim.set_attribute("a", "pingd", "0")
    sim.set_attribute("b", "pingd", "1")
    assert sim.run()["web-ip"] == "b"


# --------------------------------------------------------------------------------------------
# pcs: the command script builds what cib.xml holds


def semantics(path: Path) -> dict[str, object]:
    """What a CIB configures, without its ids, element order or default spellings."""
    root = ET.parse(path).getroot()
    parent = {child: el for el in root.iter() for child in el}

    def pairs(el: ET.Element, tag: str) -> dict[str, str]:
        return {p.get("name", ""): p.get("value", "") for p in el.findall(f"{tag}/nvpair")}

    resources = {}
    for prim in root.iter("primitive"):
        up = parent[prim]
        resources[prim.get("id")] = (
            prim.get("class"), prim.get("provider"), prim.get("type"),
            pairs(prim, "instance_attributes"), pairs(prim, "meta_attributes"),
            sorted(tuple(sorted((k, v) for k, v in op.attrib.items() if k != "id"))
                   for op in prim.findall("operations/op")),
            up.tag, up.get("id"), pairs(up, "meta_attributes"),
        )
    groups = [g.get("id") for g in root.iter("group")]
    members = {g.get("id"): [p.get("id") for p in g.findall("primitive")]
               for g in root.iter("group")}
    constraints = []
    for c in root.findall("configuration/constraints/*"):
        attrs = {k: v for k, v in c.attrib.items() if k != "id"}
        if c.tag == "rsc_order":
            attrs.setdefault("kind", "Mandatory")
        rules = [({k: v for k, v in r.attrib.items() if k != "id"},
                  sorted(tuple(sorted((k, v) for k, v in e.attrib.items() if k != "id"))
                         for e in r.findall("expression")))
                 for r in c.findall("rule")]
        constraints.append((c.tag, sorted(attrs.items()), rules))
    props = pairs(root.find("configuration/crm_config") or ET.Element("x"),
                  "cluster_property_set")
    defaults = pairs(root.find("configuration/rsc_defaults") or ET.Element("x"),
                     "meta_attributes")
    return {"resources": resources, "groups": groups, "members": members,
            "constraints": sorted(constraints, key=repr), "properties": props,
            "defaults": defaults}


EVERY_PCS_FORM = (  # every command the script can hold, in one configuration
    '[cluster]\nname = "forms"\nauto_failback = false\nping_nodes = ["192.168.85.254"]\n'
    '[[node]]\nname = "node1"\naddress = "192.168.85.1"\ncrossover_address = "10.0.0.1"\n'
    '[[node]]\nname = "node2"\naddress = "192.168.85.2"\ncrossover_address = "10.0.0.2"\n'
    '[[link]]\ntype = "udp"\ninterface = "eth1"\n'
    '[[group]]\nname = "web"\npreferred = "node1"\nresources = ["IPaddr::192.168.85.3/24/eth0",'
    ' "drbddisk::r0", "Filesystem::/dev/drbd0::/srv::ext4::noatime", "nginx.service",'
    ' "maid::vacuum", "noop::x"]\non_stop_failure = "block"\nfailure_timeout = "0"\n'
    '[[group]]\nname = "data"\npreferred = "node2"\nresources = ["drbddisk::r1"]\n'
)


@pytest.mark.slow
def test_pcs_script_builds_the_same_cib(tmp_path):
    """pcs 0.11.5 runs the exported script against an empty CIB file (its FILE mode); the result
    configures what cib.xml does. pcs checks each agent's metadata, which for systemd: needs a
    running systemd and for lsb: the installed wrapper: the test adds --force to those lines
    only (this host runs neither). About 2.5 s per pcs command here."""
    result = export(load(EVERY_PCS_FORM))
    write(result, tmp_path)
    script = tmp_path / "pcs-commands.sh"
    lines = script.read_text().splitlines()
    forced = [re.sub(r"resource create ", "resource create --force ", line)
              if re.search(r" (systemd|lsb):", line) else line for line in lines]
    assert sum(a != b for a, b in zip(lines, forced, strict=True)) == 2  # nginx, maid
    script.write_text("\n".join(forced) + "\n")
    built = tmp_path / "pcs-cib.xml"
    r = run(tool("cibadmin"), "--empty")
    assert r.returncode == 0, r.stderr
    built.write_text(r.stdout)
    tool("pcs")
    r = run("sh", str(script), str(built), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert semantics(built) == semantics(tmp_path / "cib.xml")
    r = crm_verify(built)
    assert r.returncode == 0, r.stderr
