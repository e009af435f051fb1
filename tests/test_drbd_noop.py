"""drbddisk (against a fake drbdadm) and noop agents; make_agent dispatch."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from supervisor.config import TakeoverConfig
from supervisor.core.promotion import peer_liveness
from supervisor.drivers.agent_base import ChangeSignal
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
# A fake drbdadm: the resource's state lives in files under {root}.
echo "$*" >> "{root}/calls"
r="{root}"
case "$1" in
  role) [ -e "$r/down" ] && {{ echo "r0: No such resource" >&2; exit 10; }}; cat "$r/role" ;;
  dstate) [ -e "$r/down" ] && exit 10; cat "$r/dstate" ;;
  cstate) [ -e "$r/down" ] && exit 10; cat "$r/cstate" ;;
  sh-dev) echo /dev/drbd0 ;;
  up) if [ -e "$r/no-md" ]; then echo "No valid meta data found" >&2; exit 1; fi
      rm -f "$r/down" ;;
  create-md) rm -f "$r/no-md" ;;
  primary) printf 'Primary/Secondary\\n' > "$r/role"
           if [ "$2" = --force ]; then sed -i 's|^Inconsistent/|UpToDate/|' "$r/dstate"; fi ;;
  disconnect) [ -e "$r/no-disconnect" ] && {{ echo "r0: State change failed: (-2) boom" >&2
                                               exit 11; }}
              printf 'StandAlone\\n' > "$r/cstate"
              sed -i 's|/.*|/Unknown|' "$r/role"; sed -i 's|/.*|/DUnknown|' "$r/dstate" ;;
  connect) printf 'WFConnection\\n' > "$r/cstate" ;;
  secondary) [ -e "$r/busy" ] && {{ echo "State change failed: held open" >&2; exit 11; }}
             printf 'Secondary/Secondary\\n' > "$r/role" ;;
esac
"""


@pytest.fixture
def fake(tmp_path: Path):
    script = tmp_path / "drbdadm"
    script.write_text(DRBDADM.format(root=tmp_path))
    script.chmod(0o755)
    (tmp_path / "role").write_text("Secondary/Secondary\n")
    (tmp_path / "dstate").write_text("UpToDate/UpToDate\n")
    (tmp_path / "cstate").write_text("Connected\n")
    ctx = AgentContext(takeover=TakeoverConfig(), drbdadm=str(script), command_timeout=10,
                       run_dir=tmp_path / "run", drbd_connect_wait=1.0, drbd_sync_wait=1.0,
                       modprobe="true")
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


@pytest.mark.slow  # real time: the driver polls the fake drbdadm every 0.5 s, for 1 s or more
@pytest.mark.parametrize("state", ["Outdated/UpToDate", "Inconsistent/UpToDate",
                                   "Diskless/UpToDate", "Consistent/DUnknown"])
def test_refuses_to_promote_without_uptodate_disk(fake, state):
    root, agent = fake
    (root / "dstate").write_text(state + "\n")
    with pytest.raises(AgentError, match=f"refusing to promote DRBD resource r0: the local disk "
                                         f"is {state.split('/')[0]}, not UpToDate"):
        asyncio.run(agent.start())
    assert not any(c.startswith("primary") for c in calls(root))


@pytest.mark.slow  # real time: the driver polls the fake drbdadm every 0.5 s, for 1 s or more
def test_admin_can_force(fake):
    root, agent = fake
    (root / "dstate").write_text("Outdated/DUnknown\n")
    agent.force_next = True
    asyncio.run(agent.start())
    assert "primary --force r0" in calls(root)
    assert agent.force_next is False  # one-shot
    asyncio.run(agent.stop())
    with pytest.raises(AgentError):
        asyncio.run(agent.start())


@pytest.mark.slow  # real time: the driver polls the fake drbdadm every 0.5 s, for 1 s or more
def test_refuses_while_the_peer_is_primary_even_forced(fake):
    root, agent = fake
    agent.ctx.drbd_peer_wait = 0.6
    (root / "role").write_text("Secondary/Primary\n")
    agent.force_next = True
    with pytest.raises(AgentError, match="the peer is Primary"):
        asyncio.run(agent.start())
    assert not any(c.startswith("primary") for c in calls(root))


@pytest.mark.slow  # real time: the driver polls the fake drbdadm every 0.5 s, for 1 s or more
def test_waits_for_drbd_to_notice_a_dead_primary_peer(fake):
    # seen in the QEMU pair: the heartbeat declares the powered-off peer dead after 2 s,
    # DRBD still shows it Connected and Primary until its ping times out ~10 s later
    root, agent = fake
    agent.ctx.drbd_peer_wait = 20.0
    (root / "role").write_text("Secondary/Primary\n")

    async def scenario() -> None:
        task = asyncio.create_task(agent.start())
        await asyncio.sleep(1.2)
        assert not task.done()
        assert not any(c.startswith("primary") for c in calls(root))
        (root / "role").write_text("Secondary/Unknown\n")
        (root / "cstate").write_text("WFConnection\n")
        (root / "dstate").write_text("UpToDate/DUnknown\n")
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    assert "primary r0" in calls(root)


DEAD = peer_liveness("node1", True, "peer node1 silent on all links for 2.0 s", ())


def test_a_peer_dead_on_every_link_is_disconnected_at_once_then_promote_and_listen(fake):
    # the QEMU case: the heartbeat declared the powered-off peer dead, DRBD still shows it
    # Connected and Primary (its own ping would notice ~10 s later)
    root, agent = fake
    (root / "role").write_text("Secondary/Primary\n")
    agent.ctx.peer_liveness = lambda: DEAD
    t0 = time.monotonic()
    asyncio.run(agent.start())
    assert time.monotonic() - t0 < 5.0
    assert [c for c in calls(root) if c.split()[0] in ("disconnect", "primary", "connect")] \
        == ["disconnect --force r0", "primary r0", "connect r0"]
    assert (root / "cstate").read_text() == "WFConnection\n"


def test_a_failed_disconnect_fails_the_start_with_its_stderr(fake):
    root, agent = fake
    (root / "role").write_text("Secondary/Primary\n")
    (root / "no-disconnect").touch()
    agent.ctx.peer_liveness = lambda: DEAD
    with pytest.raises(AgentError, match=r"cannot drop DRBD resource r0's connection to the "
                                         r"dead peer: .*State change failed: \(-2\) boom"):
        asyncio.run(agent.start())
    assert not any(c.startswith("primary") for c in calls(root))


@pytest.mark.slow  # real time: a wait of 0.5 s before the signal
def test_a_live_peer_is_never_disconnected_and_the_signal_wakes_the_wait(fake):
    root, agent = fake
    (root / "role").write_text("Secondary/Primary\n")
    agent.ctx.drbd_peer_wait = 30.0
    agent.ctx.drbd_poll_monitored = 30.0  # only the signal can wake it in time
    signal = ChangeSignal()
    agent.ctx.drbd_changes = signal
    alive = peer_liveness("node1", False, "", ("serial",))
    agent.ctx.peer_liveness = lambda: alive

    async def scenario() -> float:
        task = asyncio.create_task(agent.start())
        await asyncio.sleep(0.5)
        assert not task.done()
        (root / "role").write_text("Secondary/Secondary\n")
        t = time.monotonic()
        signal.notify()
        await asyncio.wait_for(task, 10)
        return time.monotonic() - t

    assert asyncio.run(scenario()) < 2.0
    assert not any(c.startswith("disconnect") for c in calls(root))
    assert "primary r0" in calls(root)


def test_refuses_a_split_brain_replica(fake):
    _root, agent = fake
    agent.ctx.drbd_split_brain = lambda resource: resource == "r0"
    with pytest.raises(AgentError, match="split brain"):
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


def test_a_resource_that_is_down_is_brought_up_by_stop(fake):
    root, agent = fake
    (root / "down").touch()
    asyncio.run(agent.stop())
    assert "up r0" in calls(root)
    assert "create-md --force r0" not in calls(root)


def test_a_disk_without_metadata_gets_it_then_comes_up(fake):
    root, agent = fake
    (root / "down").touch()
    (root / "no-md").touch()
    asyncio.run(agent.stop())
    assert calls(root) == ["role r0", "up r0", "create-md --force r0", "up r0", "role r0"]
    assert not (root / "down").exists()


def test_a_new_pair_starts_the_initial_full_sync_from_here_once(fake):
    root, agent = fake
    (root / "dstate").write_text("Inconsistent/Inconsistent\n")
    asyncio.run(agent.start())
    assert calls(root).count("primary --force r0") == 1
    assert "primary r0" not in calls(root)
    assert (root / "run" / "fresh-drbd0").read_text() == "r0\n"
    assert (root / "dstate").read_text() == "UpToDate/Inconsistent\n"
    # once the source is UpToDate the pair is not new any more: never again
    asyncio.run(agent.stop())
    asyncio.run(agent.start())
    assert calls(root).count("primary --force r0") == 1
    assert "primary r0" in calls(root)


@pytest.mark.slow  # real time: the driver polls the fake drbdadm every 0.5 s, for 1 s or more
@pytest.mark.parametrize(("dstate", "cstate"), [
    ("Inconsistent/UpToDate", "Connected"),      # the peer has the data: sync, never skip
    ("Inconsistent/Inconsistent", "WFConnection"),  # the peer is not here to confirm
    ("Inconsistent/DUnknown", "StandAlone"),
])
def test_no_bootstrap_unless_both_blank_and_connected(fake, dstate, cstate):
    root, agent = fake
    (root / "dstate").write_text(dstate + "\n")
    (root / "cstate").write_text(cstate + "\n")
    with pytest.raises(AgentError, match="refusing to promote DRBD resource r0"):
        asyncio.run(agent.start())
    assert not any(c.startswith("primary") for c in calls(root))
    assert not (root / "run").exists()


@pytest.mark.slow  # real time: the driver polls the fake drbdadm every 0.5 s, for 1 s or more
def test_a_replica_being_resynchronised_is_promoted_once_up_to_date(fake, tmp_path):
    root, agent = fake
    (root / "dstate").write_text("Inconsistent/UpToDate\n")
    (root / "cstate").write_text("SyncTarget\n")
    ctx = agent.ctx
    agent.ctx = AgentContext(takeover=ctx.takeover, drbdadm=ctx.drbdadm, command_timeout=10,
                             run_dir=ctx.run_dir, drbd_connect_wait=1.0, drbd_sync_wait=20.0,
                             modprobe="true")

    async def scenario() -> None:
        task = asyncio.create_task(agent.start())
        await asyncio.sleep(1.2)
        assert not task.done()  # still waiting for the resync
        assert not any(c.startswith("primary") for c in calls(root))
        (root / "dstate").write_text("UpToDate/UpToDate\n")
        (root / "cstate").write_text("Connected\n")
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    assert "primary r0" in calls(root)
    assert "primary --force r0" not in calls(root)


@pytest.mark.slow  # real time: the driver polls the fake drbdadm every 0.5 s, for 1 s or more
def test_a_resync_that_does_not_finish_in_time_is_refused(fake):
    root, agent = fake
    (root / "dstate").write_text("Inconsistent/UpToDate\n")
    (root / "cstate").write_text("SyncTarget\n")
    with pytest.raises(AgentError, match="the local disk is Inconsistent, not UpToDate"):
        asyncio.run(agent.start())
    assert calls(root).count("dstate r0") >= 3  # it polled for a while first
    assert not any(c.startswith("primary") for c in calls(root))
