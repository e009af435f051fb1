"""drbddisk (against a fake drbdadm) and noop agents; make_agent dispatch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from supervisor.config import TakeoverConfig
from supervisor.drivers.agents import (
    AgentContext,
    AgentError,
    DrbdAgent,
    FilesystemAgent,
    IPaddrAgent,
    NoopAgent,
    ServiceAgent,
    make_agent,
)
from supervisor.drivers.drbd import local_states
from supervisor.resource_spec import DrbdSpec, parse_resource

DRBDADM = """#!/bin/sh
echo "$*" >> "{root}/calls"
case "$1" in
  role) cat "{root}/role" ;;
  dstate) cat "{root}/dstate" ;;
  primary) printf 'Primary/Secondary\\n' > "{root}/role" ;;
  secondary) [ -e "{root}/busy" ] && {{ echo "State change failed: held open" >&2; exit 11; }}
             printf 'Secondary/Primary\\n' > "{root}/role" ;;
esac
"""


@pytest.fixture
def fake(tmp_path: Path):
    script = tmp_path / "drbdadm"
    script.write_text(DRBDADM.format(root=tmp_path))
    script.chmod(0o755)
    (tmp_path / "role").write_text("Secondary/Primary\n")
    (tmp_path / "dstate").write_text("UpToDate/UpToDate\n")
    ctx = AgentContext(takeover=TakeoverConfig(), drbdadm=str(script), command_timeout=10)
    return tmp_path, DrbdAgent(DrbdSpec("r0"), ctx)


def calls(root: Path) -> list[str]:
    return (root / "calls").read_text().splitlines()


def test_local_states():
    assert local_states("UpToDate/Outdated\n") == ["UpToDate"]
    assert local_states("Primary\n") == ["Primary"]
    assert local_states("UpToDate/UpToDate\nInconsistent/UpToDate\n") == ["UpToDate",
                                                                         "Inconsistent"]


def test_promote_and_demote(fake):
    root, agent = fake

    async def scenario():
        before = await agent.status()
        await agent.start()
        await agent.start()  # idempotent
        during = await agent.status()
        await agent.stop()
        await agent.stop()
        return before, during, await agent.status()

    assert asyncio.run(scenario()) == (False, True, False)
    assert calls(root).count("primary r0") == 1
    assert calls(root).count("secondary r0") == 1


@pytest.mark.parametrize("state", ["Outdated/UpToDate", "Inconsistent/UpToDate",
                                   "Diskless/UpToDate", "Consistent/DUnknown"])
def test_refuses_to_promote_without_uptodate_disk(fake, state):
    root, agent = fake
    (root / "dstate").write_text(state + "\n")
    with pytest.raises(AgentError, match=f"refusing to promote DRBD resource r0: the local disk "
                                         f"is {state.split('/')[0]}, not UpToDate"):
        asyncio.run(agent.start())
    assert not any(c.startswith("primary") for c in calls(root))


def test_admin_can_force(fake):
    root, agent = fake
    (root / "dstate").write_text("Outdated/DUnknown\n")
    agent.force_next_start = True
    asyncio.run(agent.start())
    assert "primary --force r0" in calls(root)
    assert agent.force_next_start is False  # one-shot
    asyncio.run(agent.stop())
    with pytest.raises(AgentError):
        asyncio.run(agent.start())


def test_demote_failure_is_reported(fake):
    root, agent = fake
    (root / "role").write_text("Primary/Secondary\n")
    (root / "busy").touch()
    with pytest.raises(AgentError, match=r"cannot demote DRBD resource r0: .*held open"):
        asyncio.run(agent.stop())


def test_unreadable_role_cannot_tell(fake, tmp_path):
    _, agent = fake
    agent.ctx.drbdadm = str(tmp_path / "missing-drbdadm")
    with pytest.raises(AgentError, match="cannot read the role"):
        asyncio.run(agent.status())


def test_noop_agent():
    agent = make_agent(parse_resource("noop::demo"), AgentContext(TakeoverConfig()))
    assert isinstance(agent, NoopAgent)

    async def scenario():
        a = await agent.status()
        await agent.start()
        await agent.start()
        b = await agent.status()
        await agent.stop()
        await agent.stop()
        return a, b, await agent.status()

    assert asyncio.run(scenario()) == (False, True, False)
    assert agent.describe() == "noop demo"


def test_make_agent_dispatch():
    ctx = AgentContext(TakeoverConfig())
    assert isinstance(make_agent(parse_resource("IPaddr::10.0.0.9/24"), ctx), IPaddrAgent)
    assert isinstance(make_agent(parse_resource("192.168.85.3"), ctx), IPaddrAgent)
    assert isinstance(make_agent(parse_resource("Filesystem::/dev/drbd0::/srv::ext4"), ctx),
                      FilesystemAgent)
    assert isinstance(make_agent(parse_resource("drbddisk::r0"), ctx), DrbdAgent)
    assert isinstance(make_agent(parse_resource("httpd"), ctx), ServiceAgent)
    assert make_agent(parse_resource("maid::vacuum"), ctx).describe().startswith(
        "service maid vacuum")
