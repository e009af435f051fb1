"""``twinbeat check-config``: do the groups' resources exist on this node?

A configuration can be valid and still name a service this node does not have (a typo, a
package not installed, a script imported from heartbeat that was never copied): the group
then fails on both nodes at the first failover. Each resource is looked up the way its agent
will look it up at run time, and a missing one is reported with the file and line of the
group's ``resources``:

* a service ``NAME``: an executable script in ``cluster.resource_dirs`` or a systemd unit
  (``systemctl show -p LoadState``: loaded), in the agent's order;
* ``drbddisk::RES``: a ``[[replicated]]`` table or ``/etc/drbd.d/RES.res``;
* ``IPaddr::ADDR/PREFIX/IFACE``: the interface exists (a warning: it may be renamed later);
* ``Filesystem::DEV::DIR::TYPE``: the kernel knows the file system type (/proc/filesystems,
  or a module for it; a warning).

Services are checked only where systemd runs (not in a build chroot or a container).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from supervisor.config import Config, Locator, Problem
from supervisor.drivers.runner import run_sync
from supervisor.resource_spec import DrbdSpec, FilesystemSpec, IPaddrSpec, ServiceSpec

UnitCheck = Callable[[str], bool | None]  # True loaded, False not, None: cannot tell


def systemd_unit_loaded(unit: str) -> bool | None:
    exe = shutil.which("systemctl")
    if exe is None or not Path("/run/systemd/system").is_dir():
        return None  # no systemd running here (a build host, a container): cannot tell
    r = run_sync([exe, "show", "-p", "LoadState", "--value", unit], timeout=10,
                 log_failure=False)
    if r.timed_out or r.returncode in (126, 127):
        return None
    return r.ok and r.stdout.strip() == "loaded"


def _fs_known(fstype: str, proc: Path, modules: Path) -> bool:
    try:
        known = {line.split()[-1] for line in proc.read_text().splitlines() if line.split()}
    except OSError:
        return True  # cannot tell
    if fstype in known:
        return True
    return any(modules.glob(f"*/kernel/fs/**/{fstype}.ko*"))


def check_resources(
    cfg: Config,
    text: str,
    *,
    unit_loaded: UnitCheck = systemd_unit_loaded,
    drbd_dir: Path = Path("/etc/drbd.d"),
    sys_root: Path = Path("/sys"),
    proc_filesystems: Path = Path("/proc/filesystems"),
    modules_dir: Path = Path("/lib/modules"),
) -> list[Problem]:
    loc = Locator(text)
    problems: list[Problem] = []
    dirs = [Path(d) for d in cfg.resource_dirs]
    replicated = {r.name for r in cfg.replicated}
    for i, group in enumerate(cfg.groups):
        key = ("group", i, "resources")
        line = loc.line(key)

        def missing(what: str, group: str = group.name, line: int = line,
                    severity: str = "error") -> None:
            problems.append(Problem(cfg.path, line, f"group {group}",
                                    f"{what} (the group would fail on this node)", severity))

        for spec in group.resources:
            if isinstance(spec, ServiceSpec):
                scripts = [d / spec.name for d in dirs]
                found = [p for p in scripts if p.is_file()]
                if found:
                    if not os.access(found[0], os.X_OK):
                        missing(f"{found[0]} exists but is not executable")
                    continue
                unit = spec.name if "." in spec.name else f"{spec.name}.service"
                loaded = unit_loaded(unit)
                if loaded is None:
                    continue  # no systemd to ask: say nothing rather than guess
                if not loaded:
                    missing(f"service {spec.name} does not exist on this node: no script "
                            f"in {', '.join(str(d) for d in dirs)} and no systemd unit "
                            f"{unit}")
            elif isinstance(spec, DrbdSpec):
                if spec.resource not in replicated and not (
                        drbd_dir / f"{spec.resource}.res").exists():
                    missing(f"drbddisk::{spec.resource}: no [[replicated]] table and no "
                            f"{drbd_dir / (spec.resource + '.res')}")
            elif isinstance(spec, IPaddrSpec):
                iface = spec.interface
                if iface and not (sys_root / "class" / "net" / iface).exists():
                    missing(f"{spec.describe()}: there is no interface {iface} on this node",
                            severity="warning")
            elif isinstance(spec, FilesystemSpec) and not _fs_known(
                    spec.fstype, proc_filesystems, modules_dir):
                missing(f"{spec.describe()}: the kernel here knows no file system "
                        f"{spec.fstype!r}", severity="warning")
    return problems
