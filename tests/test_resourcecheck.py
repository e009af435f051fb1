"""check-config: resources that do not exist on this node, with file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

from supervisor.config import Config, load_config
from supervisor.resourcecheck import check_resources


def config(tmp_path: Path, resources: str) -> tuple[Config, str]:
    scripts = tmp_path / "resource.d"
    scripts.mkdir(exist_ok=True)
    text = textwrap.dedent(f"""\
        [cluster]
        name = "pair"
        resource_dirs = ["{scripts}"]
        [[node]]
        name = "node1"
        [[node]]
        name = "node2"
        [[link]]
        type = "udp"
        interface = "lo"

        [[group]]
        name = "web"
        preferred = "node1"
        resources = [{resources}]
        """)
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    return load_config(path, check_devices=False, check_authkeys=False), text


def test_missing_service_script_unit_drbd_interface_fs(tmp_path):
    (tmp_path / "sys" / "class" / "net" / "eth0").mkdir(parents=True)
    proc = tmp_path / "filesystems"
    proc.write_text("nodev\tproc\n\text4\n")
    cfg, text = config(tmp_path, '"IPaddr::10.0.0.9/24/eth9", "drbddisk::r7", '
                       '"Filesystem::/dev/drbd0::/srv::zfs", "myscript", "nginx", "MailTo"')
    (tmp_path / "resource.d" / "myscript").write_text("#!/bin/sh\n")  # not executable
    units = {"nginx.service": True, "MailTo.service": False}
    problems = check_resources(cfg, text, unit_loaded=units.get, drbd_dir=tmp_path / "drbd.d",
                               sys_root=tmp_path / "sys", proc_filesystems=proc,
                               modules_dir=tmp_path / "modules")
    got = [(p.line, p.severity, p.message) for p in problems]
    line = text.splitlines().index(next(x for x in text.splitlines()
                                        if x.startswith("resources"))) + 1
    assert all(p.file == str(tmp_path / "cluster.toml") and p.key == "group web"
               for p in problems)
    assert got == [
        (line, "warning", "10.0.0.9/24 on eth9: there is no interface eth9 on this node "
                          "(the group would fail on this node)"),
        (line, "error", f"drbddisk::r7: no [[replicated]] table and no "
                        f"{tmp_path}/drbd.d/r7.res (the group would fail on this node)"),
        (line, "warning", "/dev/drbd0 on /srv (zfs): the kernel here knows no file system "
                          "'zfs' (the group would fail on this node)"),
        (line, "error", f"{tmp_path}/resource.d/myscript exists but is not executable (the "
                        "group would fail on this node)"),
        (line, "error", f"service MailTo does not exist on this node: no script in "
                        f"{tmp_path}/resource.d and no systemd unit MailTo.service (the group "
                        "would fail on this node)"),
    ]
    assert str(problems[1]).startswith(f"{tmp_path}/cluster.toml:{line}: group web: ")


def test_everything_present_says_nothing_and_no_systemd_says_nothing(tmp_path):
    cfg, text = config(tmp_path, '"myscript", "nginx"')
    script = tmp_path / "resource.d" / "myscript"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert check_resources(cfg, text, unit_loaded=lambda unit: None) == []
    assert check_resources(cfg, text, unit_loaded=lambda unit: True) == []
    assert len(check_resources(cfg, text, unit_loaded=lambda unit: False)) == 1
