"""The whole export (pure) and `twinbeat export pacemaker`, its I/O edge."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from supervisor.atomicfile import atomic_write
from supervisor.cli.common import config_option
from supervisor.config import (
    Config,
    ConfigError,
    load_config,
)
from supervisor.pacemaker.model import (
    DEFAULT_OUTPUT,
    SCRIPT_DIRS_BEFORE_UNITS,
    Export,
    build_model,
    knet_links,
    lsb_wrapper,
)
from supervisor.pacemaker.readme import (
    not_carried,
    render_readme,
)
from supervisor.pacemaker.render import (
    render_cib,
    render_corosync,
    render_pcs,
)
from supervisor.resource_spec import (
    ServiceSpec,
)


def export(cfg: Config, *, scripts: frozenset[str] = frozenset()) -> Export:
    """Every exported file for a validated configuration (pure).

    ``scripts`` names the bare resource NAMEs found as scripts in the resource directory that
    twinbeat searches before systemd units (they become lsb: wrappers instead of systemd:).
    """
    links, warnings = knet_links(cfg)
    m = build_model(cfg, scripts)
    left = not_carried(cfg, m)
    files = {
        "corosync.conf": render_corosync(cfg, links),
        "cib.xml": render_cib(m),
        "pcs-commands.sh": render_pcs(m),
        "README.txt": render_readme(cfg, m, links, left, warnings),
    }
    executable = {"pcs-commands.sh"}
    for name, spec in m.wrappers.items():
        files[f"lsb/{name}"] = lsb_wrapper(cfg, spec, name)
        executable.add(f"lsb/{name}")
    return Export(files, tuple(left), tuple(warnings), frozenset(executable))


# --------------------------------------------------------------------------------------------
# The command (I/O)


def parser(prog: str = "twinbeat export pacemaker") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Write the pair's configuration as a Corosync/Pacemaker cluster: "
        "corosync.conf (knet links, crossover first; two_node; token from deadtime; crypto "
        "with a key you make with corosync-keygen), cib.xml (one group per twinbeat group, "
        "in order; stonith-enabled=false), pcs-commands.sh (the same with pcs) and README.txt "
        "(what is not carried over, and why). A configuration with errors is refused with "
        "its file:line: key: problem list. Serial devices and the key file are not checked "
        "(the export may run on another machine); bare resource names are looked up as "
        "scripts in the configuration's first resource directory on this machine.",
    )
    config_option(p)
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, metavar="DIR",
                   help=f"folder to write into, created if missing (default ./{DEFAULT_OUTPUT}); "
                   "files of an earlier export there are not replaced unless --force is given")
    p.add_argument("--force", action="store_true",
                   help="replace files that already exist in DIR (each is named on stderr)")
    return p


def _found_scripts(cfg: Config) -> frozenset[str]:
    names = {s.name for g in cfg.groups for s in g.resources
             if isinstance(s, ServiceSpec) and not s.args}
    dirs = [Path(d) for d in cfg.resource_dirs[:SCRIPT_DIRS_BEFORE_UNITS]]
    return frozenset(n for n in names if any((d / n).is_file() for d in dirs))


def main_export(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    err = sys.stderr
    try:
        cfg = load_config(args.config, check_devices=False, check_authkeys=False)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        n = sum(1 for p in exc.problems if p.severity == "error")
        print(f"twinbeat export pacemaker: {args.config} has {n} error{'s' if n != 1 else ''}; "
              "fix them (twinbeat check-config shows them too) and export again", file=err)
        return 1
    for warning in cfg.warnings:
        print(warning, file=err)
    result = export(cfg, scripts=_found_scripts(cfg))
    out: Path = args.output
    if out.exists() and not out.is_dir():
        print(f"twinbeat export pacemaker: {out} exists and is not a folder", file=err)
        return 1
    existing = [name for name in result.files if (out / name).exists()]
    if existing and not args.force:
        print(f"twinbeat export pacemaker: not replacing what is already in {out}: "
              f"{', '.join(existing)} (use --force to replace them, or another --output)",
              file=err)
        return 1
    try:
        for name, text in result.files.items():
            path = out / name
            if name in existing:
                print(f"replacing {path}", file=err)
            atomic_write(path, text, mode=0o755 if name in result.executable else 0o644,
                         mkdir=True)
    except OSError as exc:
        print(f"twinbeat export pacemaker: cannot write into {out}: {exc}", file=err)
        return 1
    print(f"wrote {', '.join(str(out / n) for n in result.files)}")
    print("stonith-enabled=false is set: there is no fencing device yet; add one "
          "(README.txt)", file=err)
    print("corosync needs a key: run corosync-keygen on one node and copy "
          "/etc/corosync/authkey to the other", file=err)
    print(f"{out / 'README.txt'} says why each of these is not carried over (or differs) and "
          "what to do instead:", file=err)
    for item in result.left:
        print(f"  - {item.what}", file=err)
    for w in result.warnings:
        print(f"warning: {w}", file=err)
    return 0
