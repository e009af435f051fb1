"""`twinbeat upgrade`'s driver and the update agent, without a network or a VM: the agent's
signed protocol over a socket pair (refusals, replays, a damaged bundle), this node's agent
handlers, and the driver against a simulated pair (fake clock) that reboots, runs the boot
check, rolls back a broken version, and survives the orchestrating node's own reboot."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from supervisor.lifecycle import agent as agentlib
from supervisor.lifecycle import node as nodelib
from supervisor.lifecycle.agent import AgentError, Client, Reply, Stream
from supervisor.lifecycle.rolling import Driver, World, load_plan
from supervisor.lifecycle.upgrade import Step

KEY = agentlib.channel_key(b"the cluster secret")
OTHER_KEY = agentlib.channel_key(b"another cluster's secret")


# -- the agent's protocol ---------------------------------------------------------------------


class Agent:
    """An agent answering on socket pairs, one connection per request, in a thread."""

    def __init__(self, table: Mapping[str, agentlib.Handler], key: bytes = KEY) -> None:
        self.table = table
        self.key = key
        self.said: list[str] = []
        self.raw: list[bytes] = []  # what clients sent (for the replay test)

    def connect(self, host: str, port: int, timeout: float) -> socket.socket:
        mine, theirs = socket.socketpair()
        t = threading.Thread(target=self._serve, args=(theirs,), daemon=True)
        t.start()
        return mine

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            sock.settimeout(5)
            try:
                self.said.append(agentlib.serve_connection(sock, self.key, self.table))
            except (OSError, AgentError) as exc:
                self.said.append(f"error: {exc}")

    def client(self, key: bytes = KEY) -> Client:
        return Client("10.0.0.2", key, connector=self.connect)


def echo_table() -> dict[str, agentlib.Handler]:
    def facts(args: Mapping[str, Any], stream: Stream) -> Reply:
        return Reply({"ok": True, "facts": {"release": "0.1.0", "asked": dict(args)}})

    return {"facts": facts}


def test_a_signed_request_gets_a_signed_answer() -> None:
    agent = Agent(echo_table())
    answer = agent.client().call("facts", {"x": 1})
    assert answer == {"ok": True, "facts": {"release": "0.1.0", "asked": {"x": 1}}}


def test_a_request_under_another_key_is_refused() -> None:
    agent = Agent(echo_table())
    with pytest.raises(AgentError, match="says: refused: the message is not signed with this "
                       "cluster's key"):
        agent.client(OTHER_KEY).call("facts")


def test_an_answer_under_another_key_is_not_believed() -> None:
    agent = Agent(echo_table(), key=OTHER_KEY)
    # the agent refuses us first; an agent that answered anyway would fail our check too
    with pytest.raises(AgentError):
        agent.client().call("facts")
    nonce = "00" * 16
    forged = agentlib._line(json.dumps({"ok": True}), OTHER_KEY, agentlib._LABEL_ANSWER, nonce)
    with pytest.raises(AgentError, match="not signed with this cluster's key"):
        agentlib._verified(forged, KEY, agentlib._LABEL_ANSWER, nonce)


def test_a_replayed_request_is_refused() -> None:
    """A request captured on one connection does not work on the next (new nonce)."""
    agent = Agent(echo_table())
    a, b = socket.socketpair()
    t = threading.Thread(target=lambda: agentlib.serve_connection(b, KEY, agent.table,
                                                                  nonce="11" * 16))
    t.start()
    stream = Stream(a)
    assert stream.readline() == b"TBU1 " + b"11" * 16 + b"\n"
    request = json.dumps({"cmd": "facts", "args": {}, "nonce": "11" * 16}, sort_keys=True)
    captured = agentlib._line(request, KEY, agentlib._LABEL_REQUEST, "11" * 16)
    stream.send(captured)
    assert json.loads(stream.readline().split(b"\t")[0])["ok"] is True
    t.join()
    a.close()
    # the same bytes on a new connection, whose nonce is another
    a, b = socket.socketpair()
    t = threading.Thread(target=lambda: agentlib.serve_connection(b, KEY, agent.table,
                                                                  nonce="22" * 16))
    t.start()
    stream = Stream(a)
    stream.readline()
    stream.send(captured)
    answer = json.loads(stream.readline())
    assert answer == {"ok": False, "error": "refused: the message is not signed with this "
                                            "cluster's key (authkeys differ?)"}
    t.join()
    a.close()
    b.close()


def put_table(folder: Path) -> dict[str, agentlib.Handler]:
    return {"put": lambda args, stream: agentlib.receive_bundle(args, stream, folder)}


def test_a_bundle_is_copied_and_checked(tmp_path: Path) -> None:
    bundle = tmp_path / "twinbeat-0.1.1.raucb"
    bundle.write_bytes(bytes(range(256)) * 9000)  # > 2 MiB: several blocks
    digest = agentlib.file_sha256(bundle)
    folder = tmp_path / "peer"
    agent = Agent(put_table(folder))
    seen: list[tuple[int, int]] = []
    answer = agent.client().call("put", {"name": bundle.name, "size": bundle.stat().st_size,
                                         "sha256": digest}, body=bundle,
                                 progress=lambda s, t: seen.append((s, t)))
    assert answer["ok"] is True, answer
    assert (folder / bundle.name).read_bytes() == bundle.read_bytes()
    assert agentlib.bundles_in(folder) == {bundle.name: digest}
    assert seen[-1] == (bundle.stat().st_size,) * 2
    assert agentlib.forget_bundles(folder) == [bundle.name]
    assert list(folder.iterdir()) == []


def test_a_damaged_bundle_is_not_kept(tmp_path: Path) -> None:
    bundle = tmp_path / "twinbeat-0.1.1.raucb"
    bundle.write_bytes(b"x" * 100_000)
    folder = tmp_path / "peer"
    agent = Agent(put_table(folder))
    answer = agent.client().call("put", {"name": bundle.name, "size": 100_000,
                                         "sha256": hashlib.sha256(b"other").hexdigest()},
                                 body=bundle)
    assert answer["ok"] is False
    assert answer["error"].startswith("put: the bundle arrived damaged (SHA-256 ")
    assert list(folder.iterdir()) == []  # no file, no temporary file


def test_the_orchestrators_own_copy_is_hashed_on_the_way_and_kept_only_if_it_matches(
        tmp_path: Path) -> None:
    bundle = tmp_path / "twinbeat-0.1.1.raucb"
    bundle.write_bytes(bytes(range(256)) * 9000)  # > 2 MiB: several blocks
    folder = tmp_path / "bundles"
    folder.mkdir()
    dest = folder / bundle.name
    assert agentlib.copy_checked(bundle, dest, hashlib.sha256(b"other").hexdigest()) == (
        f"{bundle} does not match the bundle's SHA-256 (nothing copied)")
    assert list(folder.iterdir()) == []  # no file, no temporary file
    assert agentlib.copy_checked(bundle, dest, agentlib.file_sha256(bundle)) == ""
    assert dest.read_bytes() == bundle.read_bytes()
    assert dest.stat().st_mode & 0o777 == 0o600
    assert list(folder.iterdir()) == [dest]


def test_no_room_for_the_bundle_is_refused_and_nothing_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "twinbeat-0.1.1.raucb"
    bundle.write_bytes(b"y" * 50_000)
    folder = tmp_path / "peer"
    monkeypatch.setattr("supervisor.lifecycle.agent.shutil.disk_usage",
                        lambda p: type("U", (), {"free": 10 * 2**20})())
    answer = Agent(put_table(folder)).client().call(
        "put", {"name": bundle.name, "size": 50_000, "sha256": agentlib.file_sha256(bundle)},
        body=bundle)
    assert answer == {"ok": False, "error": f"no room for the bundle on {folder}: 10 MiB free, "
                                            "64 MiB needed"}
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("name", ["../etc/passwd", "twinbeat-0.1.1.tar", "x.raucb", ""])
def test_a_bundle_name_that_is_not_one_is_refused(tmp_path: Path, name: str) -> None:
    answer = Agent(put_table(tmp_path)).client().call(
        "put", {"name": name, "size": 1, "sha256": "0" * 64})
    assert answer["ok"] is False and "not a bundle name" in answer["error"]
    assert list(tmp_path.iterdir()) == []


def test_the_nodes_handlers_install_a_held_bundle_and_reboot_after_answering(
        tmp_path: Path) -> None:
    (tmp_path / "twinbeat-0.1.1.raucb").write_bytes(b"b")
    (tmp_path / "twinbeat-0.1.1.raucb.sha256").write_text("ab  twinbeat-0.1.1.raucb\n")
    ran: list[list[str]] = []

    def run(argv: list[str], timeout: float) -> tuple[bool, str]:
        ran.append(argv)
        return (True, "installed 0.1.1 into slot B\n")

    agent = Agent(nodelib.handlers("node2", tmp_path, run, facts=lambda: {"release": "x"}))
    c = agent.client()
    assert c.call("install", {"name": "twinbeat-0.1.2.raucb"}) == {
        "ok": False, "error": "no bundle 'twinbeat-0.1.2.raucb' here (copy it first)"}
    assert ran == []
    answer = c.call("install", {"name": "twinbeat-0.1.1.raucb", "allow_downgrade": True})
    assert answer == {"ok": True, "output": "installed 0.1.1 into slot B\n"}
    assert ran == [["twinbeat", "install", str(tmp_path / "twinbeat-0.1.1.raucb"),
                    "--allow-downgrade"]]
    assert c.call("reboot") == {"ok": True, "rebooting": "node2"}
    for _ in range(100):  # the reboot runs after the answer was sent, in the agent's thread
        if len(ran) == 2:
            break
        threading.Event().wait(0.02)
    assert ran[-1] == ["systemctl", "reboot"]
    assert c.call("facts") == {"ok": True, "facts": {"release": "x"}}


# -- the driver against a simulated pair ----------------------------------------------------


@dataclass
class SimNode:
    name: str
    release: str
    up: bool = True
    back_at: float | None = None  # when a reboot ends
    pending: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None
    bundles: dict[str, str] = field(default_factory=dict)
    trial_until: float | None = None


@dataclass
class SimPair:
    """Two nodes, one group (service), one replica, three links; boots take BOOT s, a trial
    TRIAL s; ``broken`` releases fail their boot check."""

    me: str = "node1"
    owner: str | None = "node1"
    broken: frozenset[str] = frozenset()
    now: float = 1000.0
    log: list[str] = field(default_factory=list)
    nodes: dict[str, SimNode] = field(default_factory=dict)
    served: list[tuple[float, str | None]] = field(default_factory=list)
    fail: dict[str, str] = field(default_factory=dict)  # action kind -> error it returns
    boot: float = 60.0
    trial: float = 30.0
    resync: float = 20.0
    synced_at: float = 0.0
    rebooted_me: bool = False
    deaf: frozenset[str] = frozenset()  # links on which the peer does not hear this node
    group_fails_on: frozenset[str] = frozenset()  # releases that cannot run the group
    maintenance: frozenset[str] = frozenset()  # nodes in maintenance mode

    def __post_init__(self) -> None:
        for n in ("node1", "node2"):
            self.nodes.setdefault(n, SimNode(n, "0.1.0"))

    @property
    def peer(self) -> str:
        return "node2" if self.me == "node1" else "node1"

    def tick(self) -> None:
        for n in self.nodes.values():
            if not n.up and n.back_at is not None and self.now >= n.back_at:
                n.up, n.back_at = True, None
                self.synced_at = self.now + self.resync
                if n.pending is not None:
                    n.release = n.pending["version"]
                    n.trial_until = self.now + self.trial
            if n.up and n.trial_until is not None and self.now >= n.trial_until:
                n.trial_until = None
                assert n.pending is not None
                if n.release in self.broken:
                    n.failure = {"version": n.release, "slot": n.pending["slot"],
                                 "running_version": n.pending["from_version"],
                                 "reason": "twinbeat.service failed (exit-code)",
                                 "at": self.now}
                    n.release = n.pending["from_version"]
                    self.log.append(f"{n.name} rolled back to {n.release}")
                n.pending = None
        if self.owner is not None and not self.nodes[self.owner].up:
            self.owner = None
        self.served.append((self.now, self.owner))

    def sleep(self, s: float) -> None:
        self.now += s
        self.tick()

    def status(self) -> dict[str, Any] | None:
        self.tick()
        me, peer = self.nodes[self.me], self.nodes[self.peer]
        if not me.up:
            return None
        alive = peer.up
        synced = alive and self.now >= self.synced_at
        return {
            "peer": {"name": peer.name, "state": "alive" if alive else "dead"},
            "links": [{"name": x, "state": "up" if alive else "down",
                       "peer_hears_us": alive and x not in self.deaf}
                      for x in ("serial", "crossover", "public")],
            "replication": [{"name": "r0", "disk": "UpToDate",
                             "peer_disk": "UpToDate" if synced else
                             ("Inconsistent" if alive else "DUnknown")}],
            "groups": [{"name": "service", "owner": self.owner,
                        "failed": self.owner is not None
                        and self.nodes[self.owner].release in self.group_fails_on}],
            "maintenance": sorted(self.maintenance),
            "versions": {"features": ["versions"], "supported": True, "protocol": 1,
                         "peer_protocol": 1 if alive else None},
        }

    def facts(self, name: str) -> dict[str, Any] | None:
        n = self.nodes[name]
        if not n.up:
            return None
        return {"release": n.release, "slot": "A", "can_install": True,
                "pending": n.pending, "failure": n.failure, "bundles": dict(n.bundles)}

    def _failing(self, kind: str) -> str:
        return self.fail.get(kind, "")

    def copy(self, node: str, bundle: Path, digest: str) -> str:
        self.log.append(f"copy {node}")
        if self._failing("copy"):
            return self._failing("copy")
        self.nodes[node].bundles[bundle.name] = digest
        return ""

    def install(self, node: str, name: str, downgrade: bool) -> str:
        self.log.append(f"install {node}")
        if self._failing("install"):
            return self._failing("install")
        version = name[len("twinbeat-"):-len(".raucb")]
        n = self.nodes[node]
        n.pending = {"slot": "B", "version": version, "from_slot": "A",
                     "from_version": n.release, "baseline": {}, "installed_at": self.now,
                     "phase": "installed"}
        self.now += 120
        return ""

    def reboot(self, node: str) -> str:
        self.log.append(f"reboot {node}")
        n = self.nodes[node]
        assert self.owner != node, "rebooted the node that serves"
        n.up, n.back_at = False, self.now + self.boot
        if node == self.me:
            self.rebooted_me = True
        return ""

    def admin(self, command: str) -> str:
        self.log.append(f"{command} on {self.me}")
        if self._failing(command):
            return self._failing(command)
        self.owner = self.peer if command == "standby" else self.me
        self.now += 3  # the handover
        return ""

    def forget(self, node: str) -> None:
        self.log.append(f"forget {node}")
        self.nodes[node].bundles.clear()

    def world(self, said: list[str], auto_failback: bool = True) -> World:
        return World(me=self.me, peer=self.peer, auto_failback=auto_failback,
                     status=self.status, facts=self.facts, copy=self.copy,
                     install=self.install, reboot=self.reboot, admin=self.admin,
                     forget=self.forget, say=said.append, clock=lambda: self.now,
                     sleep=self.sleep)


def start(sim: SimPair, tmp_path: Path, said: list[str], **kw: Any) -> tuple[Driver, Any]:
    bundle = tmp_path / "twinbeat-0.1.1.raucb"
    bundle.write_bytes(b"bundle")
    driver = Driver(sim.world(said, **kw), tmp_path / "upgrade.json")
    return driver, driver.start(bundle, "0.1.1", "d1", allow_downgrade=False)


def gaps(served: list[tuple[float, str | None]]) -> list[str | None]:
    """The owners in turn (repeats folded): who served, and None for an outage."""
    out: list[str | None] = []
    for _, owner in served:
        if not out or out[-1] != owner:
            out.append(owner)
    return out


def test_upgrade_run_from_the_serving_node_goes_on_after_its_own_reboot(tmp_path: Path) -> None:
    sim = SimPair(me="node1", owner="node1")
    said: list[str] = []
    driver, saved = start(sim, tmp_path, said)
    assert saved.plan.step is Step.COPY and saved.plan.first == "node2"
    saved = driver.run(saved)
    # node2 upgraded, the groups handed over, node1 installed and rebooting itself
    assert sim.rebooted_me and saved.plan.step is Step.WAIT_SECOND
    assert load_plan(tmp_path / "upgrade.json") == saved  # on disk before the reboot
    assert sim.log == ["copy node2", "copy node1", "install node2", "reboot node2",
                       "standby on node1", "install node1", "reboot node1"]
    # the boot: a new driver picks the plan up from disk (twinbeat-upgrade.service)
    sim.sleep(sim.boot)
    resumed = load_plan(tmp_path / "upgrade.json")
    assert resumed is not None
    saved = Driver(sim.world(said), tmp_path / "upgrade.json").run(resumed)
    assert saved.plan.step is Step.DONE, saved.plan
    assert saved.plan.reason == "done: both nodes run 0.1.1; node1 serves its groups again"
    assert {n.release for n in sim.nodes.values()} == {"0.1.1"}
    assert sim.log[-3:] == ["takeover on node1", "forget node1", "forget node2"]
    # one planned handover each way, and never a moment without an owner
    assert gaps(sim.served) == ["node1", "node2", "node1"]
    assert any(line.startswith("[copy] ") for line in said)
    assert any("this node reboots now" in line for line in said)


def test_upgrade_run_from_the_idle_node_without_failback(tmp_path: Path) -> None:
    sim = SimPair(me="node2", owner="node1")
    said: list[str] = []
    driver, saved = start(sim, tmp_path, said, auto_failback=False)
    saved = driver.run(saved)
    assert sim.rebooted_me and saved.plan.step is Step.WAIT_FIRST  # node2 is first
    sim.sleep(sim.boot)
    resumed = load_plan(tmp_path / "upgrade.json")
    assert resumed is not None
    saved = Driver(sim.world(said, auto_failback=False), tmp_path / "upgrade.json").run(resumed)
    assert saved.plan.step is Step.DONE
    assert saved.plan.reason == ("done: both nodes run 0.1.1; node2 keeps the groups "
                                 "(auto_failback is off)")
    # the handover asked of node2's own supervisor: "node1 stands by" said from node2
    assert "takeover on node2" in sim.log and "reboot node1" in sim.log
    assert gaps(sim.served) == ["node1", "node2"]


def test_a_broken_version_rolls_back_and_the_upgrade_stops_with_the_old_node_serving(
        tmp_path: Path) -> None:
    sim = SimPair(me="node1", owner="node1", broken=frozenset({"0.1.1"}))
    said: list[str] = []
    driver, saved = start(sim, tmp_path, said)
    saved = driver.run(saved)
    assert saved.plan.step is Step.STOPPED
    assert saved.plan.reason.startswith(
        "stopped at wait-first: node2 rolled back to 0.1.0: update to 0.1.1 FAILED on slot B")
    assert saved.plan.reason.endswith("; node1 serves service on 0.1.0")
    assert "install node1" not in sim.log and "standby on node1" not in sim.log
    assert gaps(sim.served) == ["node1"]  # node1 served throughout
    assert sim.nodes["node1"].release == "0.1.0"


def test_a_new_version_that_cannot_run_the_group_gives_it_back_to_the_old_one(
        tmp_path: Path) -> None:
    """node2 boots 0.1.1 healthily, but the group fails there after the handover: the
    upgrade stops and node1, still on 0.1.0, takes the group back; nothing is installed
    on node1."""
    sim = SimPair(me="node1", owner="node1", group_fails_on=frozenset({"0.1.1"}))
    said: list[str] = []
    driver, saved = start(sim, tmp_path, said)
    saved = driver.run(saved)
    assert saved.plan.step is Step.STOPPED
    assert saved.plan.reason == (
        "stopped at handover: group(s) failed during the upgrade: service; node1 takes "
        "service back on 0.1.0 (until then: node2 serves service on 0.1.1)")
    assert sim.log[-2:] == ["standby on node1", "takeover on node1"]
    assert "install node1" not in sim.log
    assert sim.owner == "node1" and sim.nodes["node1"].release == "0.1.0"
    sim.tick()
    assert gaps(sim.served) == ["node1", "node2", "node1"]


@pytest.mark.parametrize(("kind", "step"), [("copy", "copy"), ("install", "install-first"),
                                            ("standby", "handover")])
def test_a_failing_step_stops_with_the_pair_serving(tmp_path: Path, kind: str,
                                                    step: str) -> None:
    sim = SimPair(me="node1", owner="node1", fail={kind: f"{kind} broke"})
    said: list[str] = []
    driver, saved = start(sim, tmp_path, said)
    saved = driver.run(saved)
    assert saved.plan.step is Step.STOPPED, saved.plan
    assert saved.plan.reason.startswith(f"stopped at {step}: ")
    assert saved.plan.reason.endswith("; node1 serves service on 0.1.0")
    assert sim.owner == "node1" and sim.nodes["node1"].release == "0.1.0"
    assert any(f"{kind} on " in line and f"failed: {kind} broke" in line for line in said)


def test_the_peer_vanishing_mid_upgrade_stops_it(tmp_path: Path) -> None:
    sim = SimPair(me="node2", owner="node1")
    said: list[str] = []
    driver, saved = start(sim, tmp_path, said)
    sim.nodes["node1"].up = False  # the serving node dies before anything was installed
    saved = driver.run(saved)
    assert saved.plan.step is Step.STOPPED
    assert saved.plan.reason == ("stopped at copy: node1, which was to serve, does not "
                                 "answer; no node that answers serves the groups now: the "
                                 "supervisors decide who takes them over")
    assert not any(x.startswith(("install", "reboot")) for x in sim.log)


@pytest.mark.parametrize(("change", "reason"), [
    (lambda s: setattr(s.nodes["node2"], "up", False), "the peer is not alive: both nodes "
     "must be up"),
    (lambda s: setattr(s, "synced_at", s.now + 999), "replica r0 is UpToDate/Inconsistent, "
     "not UpToDate/UpToDate"),
    (lambda s: setattr(s, "deaf", frozenset({"serial"})), "the peer does not hear this node "
     "on every link: serial"),
    (lambda s: setattr(s, "maintenance", frozenset({"node1"})), "in maintenance mode: node1 "
     "(twinbeat moves nothing there; `twinbeat maintenance off` first)"),
    (lambda s: setattr(s.nodes["node2"], "pending", {"slot": "B", "version": "0.0.9",
                                                     "from_slot": "A", "from_version": "0.1.0",
                                                     "baseline": {}, "installed_at": 0}),
     "node2 has a slot on trial (an update not yet judged)"),
])
def test_refusals_say_which_check_failed_and_nothing_is_done(
        tmp_path: Path, change: Callable[[SimPair], None], reason: str) -> None:
    sim = SimPair(me="node1", owner="node1")
    change(sim)
    said: list[str] = []
    _, saved = start(sim, tmp_path, said)
    assert saved.plan.step is Step.STOPPED
    assert f"refused: {reason}" in said, said
    assert sim.log == [] and not (tmp_path / "upgrade.json").exists()


def test_a_peer_that_does_not_say_its_version_is_refused(tmp_path: Path) -> None:
    sim = SimPair(me="node1", owner="node1")
    plain = sim.status

    def old_peer() -> dict[str, Any] | None:
        st = plain()
        assert st is not None
        return {**st, "versions": {"features": [], "protocol": 1, "peer_protocol": 0,
                                   "supported": True}}

    said: list[str] = []
    driver = Driver(World(me="node1", peer="node2", auto_failback=True, status=old_peer,
                          facts=sim.facts, copy=sim.copy, install=sim.install,
                          reboot=sim.reboot, admin=sim.admin, forget=sim.forget,
                          say=said.append, clock=lambda: sim.now, sleep=sim.sleep),
                    tmp_path / "upgrade.json")
    bundle = tmp_path / "b.raucb"
    bundle.write_bytes(b"x")
    saved = driver.start(bundle, "0.1.1", "d", allow_downgrade=False)
    assert saved.plan.step is Step.STOPPED
    assert said == ["refused: the peer does not say its version in its beats (protocol 0): it "
                    "runs a twinbeat older than rolling upgrades; update it alone with "
                    "`twinbeat install` first"]


def test_every_units_twinbeat_command_line_is_one_the_cli_takes() -> None:
    """ExecStart= of the image's units: the CLI parses them (a typo would fail at boot)."""
    import re
    import shlex

    from supervisor.cli.parser import build_parser

    units = Path(__file__).resolve().parent.parent / "mkosi.extra/usr/lib/systemd/system"
    seen = {}
    for unit in sorted(units.glob("twinbeat*.service")):
        for m in re.finditer(r"^ExecStart=/usr/bin/twinbeat (.+)$", unit.read_text(), re.M):
            args = build_parser().parse_args(shlex.split(m.group(1)))
            seen[unit.name] = args.command
    assert seen["twinbeat-upgrade-agent.service"] == "upgrade-agent"
    assert seen["twinbeat-upgrade.service"] == "upgrade"
    assert seen["twinbeat-boot-check.service"] == "boot-check"
    wants = (units / "twinbeat.service.d/upgrade-agent.conf").read_text()
    assert "Wants=twinbeat-upgrade-agent.service" in wants


def test_twinbeat_status_shows_an_upgrade_under_way_or_stopped(tmp_path: Path) -> None:
    from supervisor.lifecycle.cli import upgrade_lines

    path = tmp_path / "upgrade.json"
    assert upgrade_lines(path) == []
    sim = SimPair(me="node1", owner="node1", fail={"install": "RAUC refused the bundle"})
    said: list[str] = []
    driver, saved = start(sim, tmp_path, said)
    assert upgrade_lines(path) == [
        "rolling upgrade to 0.1.1 under way: step copy (node2 first, then node1; "
        "`twinbeat upgrade --status`)"]
    driver.run(saved)
    [line] = upgrade_lines(path)
    assert line.startswith("rolling upgrade to 0.1.1 STOPPED: stopped at install-first: "
                           "installing on node2 failed: RAUC refused the bundle"), line
    path.write_text("{not json")
    [line] = upgrade_lines(path)
    assert line.startswith(f"rolling upgrade: {path} cannot be read")


def test_the_agents_accept_loop_answers_and_survives_a_client_that_goes_away(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """serve() on a listening socket (a unix one: no network address needed)."""
    path = str(tmp_path / "agent.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(2)
    caplog.set_level("INFO", logger="twinbeat.upgrade-agent")
    stop = threading.Event()
    t = threading.Thread(target=nodelib.serve, args=(listener, KEY, echo_table()),
                         kwargs={"stop": stop}, daemon=True)
    t.start()

    def connect(host: str, port: int, timeout: float) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(path)
        return s

    # a client that connects and leaves without a word
    connect("", 0, 5).close()
    answer = Client("local", KEY, connector=connect).call("facts", {"n": 2})
    assert answer["facts"]["asked"] == {"n": 2}
    answer = Client("local", KEY, connector=connect).call("facts", {"n": 3})
    assert answer["facts"]["asked"] == {"n": 3}
    for _ in range(250):  # the agent logs once the answer is sent
        messages = [(r.levelname, r.getMessage()) for r in caplog.records]
        if messages.count(("INFO", "a local client: facts: ok")) == 2:
            break
        threading.Event().wait(0.02)
    assert messages.count(("INFO", "a local client: facts: ok")) == 2, messages
    # the client that left: a warning (broken pipe or closed connection), not the end
    assert messages[0][0] == "WARNING" and messages[0][1].startswith("a local client: ")
    # stopping it ends the loop, without an exception in the thread
    stop.set()
    listener.shutdown(socket.SHUT_RDWR)
    t.join(timeout=10)
    assert not t.is_alive()
    listener.close()


# -- `twinbeat upgrade` itself (the command line), against the simulated pair ---------------

GOLDEN = Path(__file__).resolve().parent / "golden" / "firstboot" / "node1" / "etc" / "twinbeat"


@dataclass
class Cli:
    """`twinbeat upgrade` run through the real command line, on node1 of a simulated pair:
    its config (the wizard's, renamed), RAUC's answers and the lifecycle directory faked."""

    sim: SimPair
    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    info: dict[str, Any] = field(default_factory=lambda: {
        "compatible": "twinbeat-x86-64", "version": "0.1.1", "images": []})

    def __post_init__(self) -> None:
        from supervisor.lifecycle import rolling, system

        conf = GOLDEN.joinpath("cluster.toml").read_text()
        conf = conf.replace("linuxha1", "node1").replace("linuxha2", "node2")
        conf = conf.replace('"/etc/twinbeat/authkeys"', f'"{self.tmp}/authkeys"')
        (self.tmp / "cluster.toml").write_text(conf)
        (self.tmp / "authkeys").write_bytes(GOLDEN.joinpath("authkeys").read_bytes())
        (self.tmp / "authkeys").chmod(0o600)
        self.monkeypatch.setattr(system, "LIFECYCLE_DIR", self.tmp / "lifecycle")
        self.monkeypatch.setattr(system, "rauc_info", self._rauc_info)
        self.monkeypatch.setattr(system, "node_compatible", lambda: "twinbeat-x86-64")
        self.monkeypatch.setattr(rolling, "real_world", self._world)
        self.worlds: list[tuple[str, str, str, bool]] = []

    def _rauc_info(self, bundle: Path) -> dict[str, Any]:
        if bundle.read_bytes() == b"tampered":
            from supervisor.lifecycle.system import LifecycleError

            raise LifecycleError("rauc-Message: signature verification failed: CMS error")
        return self.info

    def _world(self, me: str, peer: str, peer_host: str, secret: bytes, *,
               auto_failback: bool, bundles: Path, say: Callable[[str], None]) -> World:
        from dataclasses import replace

        self.worlds.append((me, peer, peer_host, auto_failback))
        return replace(self.sim.world([], auto_failback=auto_failback), say=say)

    def run(self, *args: str) -> int:
        from supervisor.cli import main

        return main(["upgrade", *args, "--config", str(self.tmp / "cluster.toml"),
                     "--node", "node1"])

    def bundle(self, content: bytes = b"bundle") -> str:
        path = self.tmp / "twinbeat-0.1.1.raucb"
        path.write_bytes(content)
        return str(path)


def _lines(text: str) -> list[str]:
    """Printed lines without their time stamps (HH:MM:SS)."""
    return [line[9:] if line[:2].isdigit() and line[8:9] == " " else line
            for line in text.splitlines()]


def test_twinbeat_upgrade_runs_the_pair_to_the_new_version_across_its_own_reboot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    sim = SimPair(me="node1", owner="node1")
    cli = Cli(sim, tmp_path, monkeypatch)
    assert cli.run("--status") == 0
    assert capsys.readouterr().out == "no upgrade has been started on this node\n"
    assert cli.run(cli.bundle()) == 0  # returns when node1 reboots itself
    out = _lines(capsys.readouterr().out)
    assert cli.worlds == [("node1", "node2", "10.0.0.2", True)]
    assert out[0] == f"checking the pair for an upgrade to 0.1.1 ({tmp_path}/twinbeat-0.1.1.raucb)"
    assert out[1] == ("[copy] upgrading to 0.1.1: node2 first (it owns nothing), then node1 "
                      "after a planned handover of service")
    for expected in ("[copy] copying the bundle to node2 over the crossover link",
                     "[install-first] installing 0.1.1 into node2's other slot",
                     "[wait-first] rebooting node2 into 0.1.1",
                     "[handover] planned handover: node1 hands service to node2",
                     "[install-second] installing 0.1.1 into node1's other slot"):
        assert expected in out, out
    assert out[-1].startswith("[wait-second] this node reboots now")
    assert sim.rebooted_me and sim.owner == "node2"
    assert cli.run("--status") == 0
    assert capsys.readouterr().out == (
        "upgrade to 0.1.1 (from 0.1.0): node2 first, then node1; step wait-second\n")
    # a second `twinbeat upgrade` while one is under way is refused
    assert cli.run(cli.bundle()) == 1
    assert "an upgrade to 0.1.1 is under way (step wait-second)" in capsys.readouterr().err
    # the boot: twinbeat-upgrade.service resumes it
    sim.sleep(sim.boot)
    assert cli.run("--resume", "--if-pending") == 0
    out = _lines(capsys.readouterr().out)
    assert out[0] == "resuming the upgrade to 0.1.1 at wait-second"
    assert out[-1] == "done: both nodes run 0.1.1; node1 serves its groups again"
    assert {n.release for n in sim.nodes.values()} == {"0.1.1"}
    assert gaps(sim.served) == ["node1", "node2", "node1"]
    # nothing left to resume: the boot unit says nothing
    assert cli.run("--resume", "--if-pending") == 0
    assert capsys.readouterr().out == ""


def test_twinbeat_upgrade_refuses_with_the_reasons_and_saves_no_plan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    sim = SimPair(me="node1", owner="node1")
    sim.synced_at = sim.now + 999
    cli = Cli(sim, tmp_path, monkeypatch)
    cli.info = {"compatible": "twinbeat-arm64", "version": "0.1.1", "images": []}
    assert cli.run(cli.bundle()) == 1
    out = _lines(capsys.readouterr().out)
    assert "refused: replica r0 is UpToDate/Inconsistent, not UpToDate/UpToDate" in out
    assert ("refused: the bundle is for twinbeat-arm64, this pair takes twinbeat-x86-64 "
            "bundles (another architecture or product)") in out
    assert sim.log == [] and not (tmp_path / "lifecycle" / "upgrade.json").exists()


def test_twinbeat_upgrade_refuses_a_bundle_rauc_rejects_or_that_is_not_there(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    sim = SimPair(me="node1", owner="node1")
    cli = Cli(sim, tmp_path, monkeypatch)
    assert cli.run(cli.bundle(b"tampered")) == 1
    err = capsys.readouterr().err
    assert err.startswith("twinbeat: the bundle's signature does not check out against this "
                          "node's key"), err
    assert cli.run(str(tmp_path / "nothing.raucb")) == 1
    assert capsys.readouterr().err == f"twinbeat: {tmp_path}/nothing.raucb: no such file\n"
    assert sim.log == []


def test_twinbeat_upgrade_interrupted_keeps_the_plan_and_abandon_forgets_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    sim = SimPair(me="node1", owner="node1")
    cli = Cli(sim, tmp_path, monkeypatch)
    plain = sim.install

    def interrupted(node: str, name: str, downgrade: bool) -> str:
        plain(node, name, downgrade)
        raise KeyboardInterrupt  # Ctrl-C while node2 installs

    sim.install = interrupted  # type: ignore[method-assign]
    assert cli.run(cli.bundle()) == 130
    out = _lines(capsys.readouterr().out)
    assert out[-1] == ("interrupted: the plan is kept; `twinbeat upgrade --resume` goes on "
                       "from here, `twinbeat upgrade --abandon` forgets it")
    saved = load_plan(tmp_path / "lifecycle" / "upgrade.json")
    assert saved is not None and saved.plan.step is Step.INSTALL_FIRST and saved.plan.asked
    assert cli.run("--abandon") == 0
    assert capsys.readouterr().out == ("upgrade abandoned at install-first; nothing is "
                                       "undone: `twinbeat status` on both nodes shows where "
                                       "they are\n")
    assert cli.run("--resume") == 0
    assert capsys.readouterr().out == "no unfinished upgrade to resume\n"
    assert cli.run("--status") == 0
    assert capsys.readouterr().out == (
        "upgrade to 0.1.1 (from 0.1.0): node2 first, then node1; step stopped: abandoned at "
        "install-first by the administrator\n")
