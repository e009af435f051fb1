"""Service agents: heartbeat's resolution order, scripts with arguments, units, idempotence."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from supervisor.config import TakeoverConfig
from supervisor.drivers.agents import AgentContext, AgentError, ServiceAgent, make_agent
from supervisor.drivers.services import ScriptBackend, UnitBackend, resolution_order, unit_name
from supervisor.resource_spec import ServiceSpec, parse_resource

# A heartbeat-style script: records every call, keeps its state in a file, LSB status codes.
SCRIPT = """#!/bin/sh
NAME=$(basename "$0")
LOG="{log}"
STATE="{state}/$NAME.running"
op=""
for a in "$@"; do op="$a"; done
echo "$NAME $*" >> "$LOG"
case "$op" in
  start) {start_fail} touch "$STATE" ;;
  stop) {stop_fail} rm -f "$STATE" ;;
  status) [ -e "$STATE" ] && exit 0; exit 3 ;;
  *) exit 2 ;;
esac
"""

# A fake systemctl: units listed in $UNITS exist; state files per unit.
SYSTEMCTL = """#!/bin/sh
echo "systemctl $*" >> "{log}"
case "$1" in
  show) for u in {units}; do [ "$u" = "$5" ] && echo loaded && exit 0; done; echo not-found ;;
  start) touch "{state}/$2.active" ;;
  stop) rm -f "{state}/$2.active" ;;
  is-active) [ -e "{state}/$2.active" ] && echo active && exit 0; echo inactive; exit 3 ;;
esac
"""


class Env:
    def __init__(self, root: Path, units: tuple[str, ...] = ()) -> None:
        self.resource_d = root / "resource.d"
        self.init_d = root / "init.d"
        self.state = root / "state"
        for d in (self.resource_d, self.init_d, self.state):
            d.mkdir()
        self.log = root / "calls.log"
        self.log.touch()
        systemctl = root / "systemctl"
        systemctl.write_text(SYSTEMCTL.format(log=self.log, state=self.state,
                                              units=" ".join(units) or "none"))
        systemctl.chmod(0o755)
        self.ctx = AgentContext(
            takeover=TakeoverConfig(),
            resource_dirs=(self.resource_d, self.init_d),
            systemctl=str(systemctl),
            command_timeout=10,
        )

    def script(self, folder: Path, name: str, *, start_fail: bool = False,
               stop_fail: bool = False) -> Path:
        path = folder / name
        path.write_text(SCRIPT.format(
            log=self.log, state=self.state,
            start_fail="exit 1;" if start_fail else "",
            stop_fail="exit 1;" if stop_fail else "",
        ))
        path.chmod(0o755)
        return path

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()


def run(coro):
    return asyncio.run(coro)


def test_resolution_order_is_pure_and_heartbeat_like():
    dirs = (Path("/etc/twinbeat/resource.d"), Path("/etc/init.d"))
    assert resolution_order("httpd", dirs, 1) == [
        ScriptBackend(Path("/etc/twinbeat/resource.d/httpd")),
        UnitBackend("httpd.service"),
        ScriptBackend(Path("/etc/init.d/httpd")),
    ]
    assert unit_name("nginx.service") == "nginx.service"
    assert unit_name("smb") == "smb.service"
    assert resolution_order("x", dirs, 0)[0] == UnitBackend("x.service")


def test_script_in_resource_d_wins_over_unit_and_init_d(tmp_path):
    env = Env(tmp_path, units=("httpd.service",))
    env.script(env.resource_d, "httpd")
    env.script(env.init_d, "httpd")
    agent = ServiceAgent(ServiceSpec("httpd"), env.ctx)
    assert run(agent.resolve()) == ScriptBackend(env.resource_d / "httpd")


def test_unit_wins_over_init_d(tmp_path):
    env = Env(tmp_path, units=("httpd.service",))
    env.script(env.init_d, "httpd")
    agent = ServiceAgent(ServiceSpec("httpd"), env.ctx)
    assert run(agent.resolve()) == UnitBackend("httpd.service")


def test_init_d_used_when_no_unit(tmp_path):
    env = Env(tmp_path)
    env.script(env.init_d, "smb")
    agent = ServiceAgent(ServiceSpec("smb"), env.ctx)
    assert run(agent.resolve()) == ScriptBackend(env.init_d / "smb")
    assert "init.d/smb" in agent.describe()


def test_nothing_found(tmp_path):
    env = Env(tmp_path)
    agent = ServiceAgent(ServiceSpec("nosuch"), env.ctx)
    with pytest.raises(AgentError, match=r"no script in .* and no systemd unit nosuch\.service"):
        run(agent.start())


def test_not_executable_script_is_reported(tmp_path):
    env = Env(tmp_path)
    env.script(env.resource_d, "maid").chmod(0o644)
    with pytest.raises(AgentError, match="not executable"):
        run(ServiceAgent(ServiceSpec("maid"), env.ctx).status())


def test_three_scripts_start_stop_with_args_and_idempotence(tmp_path):
    env = Env(tmp_path)
    for name in ("alpha", "beta", "maid"):
        env.script(env.resource_d, name)
    agents = [make_agent(parse_resource(s), env.ctx)
              for s in ("alpha", "beta::one", "maid::vacuum::quietly")]

    async def scenario():
        for a in agents:
            await a.start()
        states = [await a.status() for a in agents]
        for a in agents:
            await a.start()  # idempotent: already running, no second start
        for a in reversed(agents):
            await a.stop()
        after = [await a.status() for a in agents]
        for a in reversed(agents):
            await a.stop()  # idempotent: stopping again is fine
        return states, after

    states, after = run(scenario())
    assert states == [True, True, True]
    assert after == [False, False, False]
    ops = [c for c in env.calls() if not c.endswith(" status")]
    assert ops == [
        "alpha start",
        "beta one start",
        "maid vacuum quietly start",
        "maid vacuum quietly stop",
        "beta one stop",
        "alpha stop",
        "maid vacuum quietly stop",
        "beta one stop",
        "alpha stop",
    ]


def test_start_failure_raises_with_stderr(tmp_path):
    env = Env(tmp_path)
    path = env.script(env.resource_d, "broken", start_fail=True)
    path.write_text(path.read_text().replace("exit 1;", "echo 'port 80 busy' >&2; exit 1;"))
    with pytest.raises(AgentError, match="port 80 busy"):
        run(ServiceAgent(ServiceSpec("broken"), env.ctx).start())


def test_stop_failure_while_running_raises(tmp_path):
    env = Env(tmp_path)
    env.script(env.resource_d, "sticky", stop_fail=True)
    agent = ServiceAgent(ServiceSpec("sticky"), env.ctx)
    run(agent.start())
    with pytest.raises(AgentError, match="cannot stop sticky"):
        run(agent.stop())


def test_stop_failure_when_not_running_is_accepted(tmp_path):
    env = Env(tmp_path)
    env.script(env.resource_d, "sticky", stop_fail=True)
    agent = ServiceAgent(ServiceSpec("sticky"), env.ctx)
    run(agent.stop())  # the stop failed, but the service is not running: no error
    assert "sticky stop" in env.calls()
    assert not run(agent.status())


def test_status_unknown_raises(tmp_path):
    env = Env(tmp_path)
    path = env.resource_d / "odd"
    path.write_text("#!/bin/sh\nexit 4\n")
    path.chmod(0o755)
    with pytest.raises(AgentError, match="cannot tell"):
        run(ServiceAgent(ServiceSpec("odd"), env.ctx).status())


def test_script_timeout_is_an_error(tmp_path):
    env = Env(tmp_path)
    path = env.resource_d / "slow"
    path.write_text("#!/bin/sh\nexec sleep 30\n")
    path.chmod(0o755)
    env.ctx.command_timeout = 0.3
    with pytest.raises(AgentError, match="timed out"):
        run(ServiceAgent(ServiceSpec("slow"), env.ctx).status())


def test_systemd_unit_backend(tmp_path):
    env = Env(tmp_path, units=("nginx.service",))
    agent = ServiceAgent(ServiceSpec("nginx"), env.ctx)

    async def scenario():
        before = await agent.status()
        await agent.start()
        during = await agent.status()
        await agent.stop()
        await agent.stop()
        return before, during, await agent.status()

    assert run(scenario()) == (False, True, False)
    calls = [c for c in env.calls() if not c.startswith("systemctl show")]
    assert "systemctl start nginx.service" in calls
    assert "systemctl is-active nginx.service" in calls
    assert calls.count("systemctl stop nginx.service") == 2


def test_missing_systemctl_means_no_units(tmp_path):
    env = Env(tmp_path)
    env.ctx.systemctl = str(tmp_path / "no-systemctl")
    env.script(env.init_d, "smb")
    assert run(ServiceAgent(ServiceSpec("smb"), env.ctx).resolve()) == ScriptBackend(
        env.init_d / "smb")
