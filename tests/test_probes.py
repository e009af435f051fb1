"""Health probes: which resource gets which probe, and the service agent with fake probes
(a failed probe is a failed monitor with its reason; start waits for a first answer)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import pytest

from supervisor.config import load_config
from supervisor.drivers.agents import AgentError, ServiceAgent, make_agent
from supervisor.drivers.probes import Probe, probe_for, run_probe
from supervisor.importer import import_heartbeat
from supervisor.resource_spec import ServiceSpec
from tests.test_services import Env


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize(("name", "argv"), [
    ("smbd", ("smbclient", "-N", "//127.0.0.1/IPC$", "-c", "exit")),
    ("smbd.service", ("smbclient", "-N", "//127.0.0.1/IPC$", "-c", "exit")),
    ("samba", ("smbclient", "-N", "//127.0.0.1/IPC$", "-c", "exit")),
    ("nfs-server", ("rpcinfo", "-T", "tcp", "127.0.0.1", "nfs")),
    ("nfs-kernel-server.service", ("rpcinfo", "-T", "tcp", "127.0.0.1", "nfs")),
    ("postgresql", ("/usr/lib/postgresql/17/bin/pg_isready", "-h", "/var/run/postgresql",
                    "-t", "5")),
    ("postgresql@17-main.service", ("/usr/lib/postgresql/17/bin/pg_isready", "-h",
                                    "/var/run/postgresql", "-t", "5")),
    ("postgresql@16-other", ("/usr/lib/postgresql/16/bin/pg_isready", "-h",
                             "/var/run/postgresql", "-t", "5")),
])
def test_probe_table(name: str, argv: tuple[str, ...]) -> None:
    probe = probe_for(name)
    assert probe is not None
    assert probe.commands == (argv,)


@pytest.mark.parametrize("name", ["httpd", "twinbeat-demo-web", "postgresql@", "nmbd",
                                  "postgresql@main"])
def test_no_probe_for_other_services(name: str) -> None:
    assert probe_for(name) is None


class FakeProbe:
    """A probe command that answers from a file: 'ok' exits 0, anything else fails with it."""

    def __init__(self, tmp: Path) -> None:
        self.answer = tmp / "answer"
        self.count = tmp / "count"
        self.script = tmp / "probe"
        self.script.write_text(
            f'#!/bin/sh\necho x >> "{self.count}"\nread a < "{self.answer}"\n'
            '[ "$a" = ok ] && exit 0\necho "no answer: $a"\nexit 2\n')
        self.script.chmod(0o755)
        self.set("ok")

    def set(self, text: str) -> None:
        self.answer.write_text(text + "\n")

    def calls(self) -> int:
        return len(self.count.read_text().splitlines()) if self.count.exists() else 0

    def probes(self, name: str) -> Probe | None:
        if name != "postgresql":
            return None
        return Probe("fake pg_isready", ((str(self.script),),))


def env_with_probe(tmp_path: Path, **ctx: float) -> tuple[Env, FakeProbe]:
    env = Env(tmp_path, units=("postgresql.service", "httpd.service"))
    probe = FakeProbe(tmp_path)
    env.ctx = dataclasses.replace(env.ctx, probes=probe.probes, probe_timeout=5,
                                  probe_ready_wait=ctx.get("ready", 2.0),
                                  probe_interval=0.05)
    return env, probe


def test_status_is_the_unit_and_the_probe(tmp_path: Path) -> None:
    env, probe = env_with_probe(tmp_path)
    agent = ServiceAgent(ServiceSpec("postgresql"), env.ctx)
    assert run(agent.status()) is False  # unit inactive: the probe is not asked
    assert probe.calls() == 0
    run(agent.start())
    assert run(agent.status()) is True
    probe.set("rejecting")
    with pytest.raises(AgentError, match=r"postgresql is running but unhealthy: fake pg_isready "
                                         r"failed: .* exited with status 2 .*no answer: "
                                         r"rejecting"):
        run(agent.status())


def test_start_waits_for_the_first_answer(tmp_path: Path) -> None:
    env, probe = env_with_probe(tmp_path, ready=5.0)
    probe.set("starting")
    agent = ServiceAgent(ServiceSpec("postgresql"), env.ctx)

    async def scenario() -> None:
        task = asyncio.ensure_future(agent.start())
        while probe.calls() < 3:
            await asyncio.sleep(0.02)
        assert not task.done()  # still waiting: the service does not answer yet
        probe.set("ok")
        await asyncio.wait_for(task, 5)

    run(scenario())
    assert "systemctl start postgresql.service" in env.calls()


def test_start_fails_when_no_answer_comes(tmp_path: Path) -> None:
    env, probe = env_with_probe(tmp_path, ready=0.3)
    probe.set("down")
    agent = ServiceAgent(ServiceSpec("postgresql"), env.ctx)
    with pytest.raises(AgentError, match=r"postgresql started but does not answer fake "
                                         r"pg_isready within 0.3 s: .*no answer: down"):
        run(agent.start())


def test_start_fails_at_once_when_the_unit_stops(tmp_path: Path) -> None:
    env, probe = env_with_probe(tmp_path, ready=30.0)
    probe.set("down")
    # the fake systemctl's start leaves the unit inactive (it "crashed" right away)
    (tmp_path / "systemctl").write_text((tmp_path / "systemctl").read_text().replace(
        'start) touch', 'start) true'))
    agent = ServiceAgent(ServiceSpec("postgresql"), env.ctx)
    with pytest.raises(AgentError, match="postgresql stopped right after its start"):
        run(asyncio.wait_for(agent.start(), 10))
    assert probe.calls() == 1


def test_services_without_probe_are_unchanged(tmp_path: Path) -> None:
    env, probe = env_with_probe(tmp_path)
    agent = ServiceAgent(ServiceSpec("httpd"), env.ctx)
    run(agent.start())
    assert run(agent.status()) is True
    assert probe.calls() == 0


def test_run_probe_reports_a_missing_client() -> None:
    probe = Probe("an SMB null session", (("/nonexistent/smbclient", "-N"),))
    reason = run(run_probe(probe, 5))
    assert reason is not None
    assert reason.startswith("an SMB null session failed: `/nonexistent/smbclient -N` exited "
                             "with status 127")


HA_CF = "keepalive 1\ndeadtime 10\nbcast eth0\nserial /dev/ttyS0\nnode node1\nnode node2\n"


def test_heartbeat_line_with_postgresql_is_monitored_by_pg_isready(tmp_path: Path) -> None:
    line = "node1 192.168.85.3 drbddisk::r0 Filesystem::/dev/drbd0::/srv::ext4 postgresql\n"
    result = import_heartbeat(HA_CF, line, "auth 1\n1 sha1 a-long-enough-secret\n",
                              secret_factory=lambda: "x" * 32)
    (tmp_path / "cluster.toml").write_text(result.config_text)
    fd = os.open(tmp_path / "authkeys", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, result.authkeys_text.encode())
    os.close(fd)
    cfg = load_config(tmp_path / "cluster.toml", check_devices=False)
    (group,) = cfg.groups
    assert [r.kind for r in group.resources] == ["IPaddr", "drbddisk", "Filesystem", "service"]
    (tmp_path / "env").mkdir()
    env = Env(tmp_path / "env")
    agent = make_agent(group.resources[-1], env.ctx)
    assert isinstance(agent, ServiceAgent)
    probe = agent.ctx.probes(agent.spec.name)
    assert probe is not None
    assert probe.commands == (("/usr/lib/postgresql/17/bin/pg_isready", "-h",
                               "/var/run/postgresql", "-t", "5"),)
