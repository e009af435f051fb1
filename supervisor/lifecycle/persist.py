"""The node's identity on the state partition (/persist), kept across updates.

Two kinds of files make a node itself:

* directories the node writes while it runs, bound from /persist over the slot's own by
  /etc/fstab: /etc/twinbeat (cluster.toml, authkeys), /etc/systemd/network, /etc/drbd.d,
  /etc/ssh/host-keys, /root (root's SSH key) and /var/log/journal. ``prepare`` creates
  them on the first boot, from the slot's own (empty or default) copies, before they are
  bound: both slots then see the same files;
* files systemd reads before anything is mounted, or that packages change in a new
  version: /etc/machine-id, /etc/hostname, /etc/hosts and root's line of /etc/shadow, and
  which units are enabled or disabled. They stay in each slot; ``seed_slot`` copies them
  from the running slot into a slot RAUC has just written (its post-install handler), and
  ``save`` keeps a copy on /persist/identity (at shutdown and before every install).
  The data services' files the wizard writes into package folders (smb.conf, the NFS
  exports and settings, PostgreSQL's conf.d file and pg_hba.conf: ``service_files()``) and
  the file share's Unix account (its lines in passwd, group, shadow and gshadow, named by
  /etc/twinbeat/services.toml) are carried the same way, each file keeping the new slot's
  owner (postgres's ids are the new image's). So are the node's TLS key and certificate
  (``TLS_FILES``, made on the first boot): a new slot keeps the node's TLS identity
  instead of making another key.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from supervisor.atomicfile import atomic_copytree, atomic_write

#: the state partition's mount point
PERSIST = Path("/persist")
ACTIONS = ("prepare", "save", "seed-slots")

#: (path in the slot, mode of the directory on /persist) for each bound directory
BOUND = (
    ("etc/twinbeat", 0o755),
    ("etc/systemd/network", 0o755),
    ("etc/drbd.d", 0o755),
    ("etc/ssh/host-keys", 0o755),
    ("root", 0o700),
    ("etc/systemd/timesyncd.conf.d", 0o755),  # the wizard's NTP server
    ("var/log/journal", 0o2755),
    # the supervisor's state: above all the boot generation, which must only grow (the
    # peer drops a beat of an older generation as a replay: a node back in a fresh slot
    # with its counter reset would never be heard again); also the history, the mail
    # queue, maintenance flags and split brains
    ("var/lib/twinbeat", 0o700),
)
#: files copied into a new slot (and saved to /persist/identity)
COPIED = ("etc/machine-id", "etc/hostname", "etc/hosts")
SHADOW = "etc/shadow"


def service_files() -> tuple[str, ...]:
    """The data services' files the wizard writes outside the bound directories (when it has
    a replicated disk and a data service); services.toml itself is in /etc/twinbeat (bound).
    supervisor.dataservices is imported here, when a slot is seeded: ``prepare`` runs on
    every boot and needs none of it."""
    from supervisor import dataservices as dsm

    return tuple(p.lstrip("/") for p in (dsm.SMB_CONF, dsm.EXPORTS, dsm.NFS_CONF,
                                         dsm.PG_CONF, dsm.PG_HBA))


#: the node's TLS key and self-signed certificate (twinbeat-ssl-cert.service makes them on the
#: first boot; PostgreSQL serves with them): carried into a new slot like the wizard's files,
#: so that a client that pinned the certificate still trusts the node after an update
TLS_FILES = ("etc/ssl/private/ssl-cert-snakeoil.key", "etc/ssl/certs/ssl-cert-snakeoil.pem")
#: the account files that hold the file share's user (gshadow may be missing)
ACCOUNT_FILES = ("etc/passwd", "etc/group", "etc/shadow", "etc/gshadow")
UNIT_DIR = "etc/systemd/system"
UNIT_PATHS = ("etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system")


def prepare(root: Path, persist: Path) -> list[str]:
    """Create what /etc/fstab binds from /persist (first boot: from the slot's copies)."""
    done: list[str] = []
    for rel, mode in BOUND:
        dest = persist / rel
        if dest.is_dir():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_copytree(root / rel, dest, mode=mode)
        done.append(f"created {dest} (from /{rel})")
    for sub in ("lifecycle", "rauc", "identity"):
        (persist / sub).mkdir(parents=True, exist_ok=True)
    return done


def _root_shadow_line(shadow: str) -> str | None:
    for line in shadow.splitlines():
        if line.startswith("root:"):
            return line
    return None


def save(root: Path, persist: Path) -> list[str]:
    """Copy the identity files of the running slot to /persist/identity."""
    out = persist / "identity"
    out.mkdir(parents=True, exist_ok=True)
    done: list[str] = []
    for rel in COPIED:
        try:
            data = (root / rel).read_bytes()
        except OSError:
            continue
        if not data.strip():
            continue
        name = Path(rel).name
        atomic_write(out / name, data, mode=0o644)
        done.append(f"saved /{rel}")
    try:
        line = _root_shadow_line((root / SHADOW).read_text(encoding="utf-8"))
    except OSError:
        line = None
    if line is not None:
        atomic_write(out / "root.shadow", (line + "\n").encode(), mode=0o600)
        done.append("saved root's password")
    return done


def _unit_exists(root: Path, unit: str) -> bool:
    return any((root / d / unit).exists() or (root / d / unit).is_symlink() for d in UNIT_PATHS)


def _links(root: Path) -> dict[str, str]:
    """{"multi-user.target.wants/x.service": target} under /etc/systemd/system."""
    base = root / UNIT_DIR
    found: dict[str, str] = {}
    if not base.is_dir():
        return found
    for d in sorted(base.iterdir()):
        if not (d.is_dir() and d.name.endswith((".wants", ".requires"))):
            continue
        for link in sorted(d.iterdir()):
            if link.is_symlink():
                found[f"{d.name}/{link.name}"] = os.readlink(link)
    return found


def carry_units(running: Path, slot: Path) -> list[str]:
    """Make the new slot enable and disable what the running one does: a unit enabled here
    is enabled there; a unit disabled here (present here, no link) loses its link there.
    Units that only the new version has keep its own presets."""
    done: list[str] = []
    have, new = _links(running), _links(slot)
    for rel, target in have.items():
        unit = Path(rel).name
        if rel not in new and _unit_exists(slot, unit):
            link = slot / UNIT_DIR / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target)
            done.append(f"enabled {rel}")
    for rel in new:
        unit = Path(rel).name
        if rel not in have and _unit_exists(running, unit):
            (slot / UNIT_DIR / rel).unlink()
            done.append(f"disabled {rel}")
    return done


def _share_user(running: Path) -> str | None:
    """The file share's account name from services.toml (None: no share configured)."""
    from supervisor import dataservices as dsm

    try:
        text = (running / dsm.SERVICES_FILE.lstrip("/")).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    share = dsm.load_text(text).share
    return share.user.name if share is not None else None


def account_lines_with(text: str, lines: list[str]) -> str:
    """text (a passwd-like file) with each of lines in place of the entry of the same name,
    or appended when it has none."""
    names = {line.split(":", 1)[0]: line for line in lines}
    out: list[str] = []
    for line in text.splitlines():
        name = line.split(":", 1)[0]
        out.append(names.pop(name, line))
    out.extend(line for line in lines if line.split(":", 1)[0] in names)
    return "\n".join(out) + "\n"


def _carry_account(running: Path, slot: Path, name: str) -> list[str]:
    done: list[str] = []
    for rel in ACCOUNT_FILES:
        try:
            have = (running / rel).read_text(encoding="utf-8")
            st = (slot / rel).stat()
            new = (slot / rel).read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        lines = [x for x in have.splitlines() if x.split(":", 1)[0] == name]
        if not lines:
            continue
        updated = account_lines_with(new, lines)
        if updated != new:
            atomic_write(slot / rel, updated.encode(), mode=st.st_mode & 0o7777,
                         uid=st.st_uid, gid=st.st_gid)
        done.append(f"{name} in /{rel}")
    return done


def _carry_files(running: Path, slot: Path, files: tuple[str, ...]) -> list[str]:
    """Files of the running slot into the new one: the source's mode, the new slot's owner
    (of the file the package made, else of its folder: postgres's and ssl-cert's ids are
    the new image's)."""
    done: list[str] = []
    for rel in files:
        src, dest = running / rel, slot / rel
        try:
            data = src.read_bytes()
            mode = src.stat().st_mode & 0o7777
        except FileNotFoundError:
            continue
        owner = dest if dest.exists() else dest.parent
        if not owner.exists():
            dest.parent.mkdir(parents=True)
            owner = dest.parent
        st = owner.stat()
        atomic_write(dest, data, mode=mode, uid=st.st_uid, gid=st.st_gid)
        done.append(f"/{rel}")
    return done


def seed_slot(running: Path, slot: Path) -> list[str]:
    """Copy this node's identity from the running slot into a freshly written one."""
    done: list[str] = []
    for rel in COPIED:
        src, dest = running / rel, slot / rel
        try:
            data = src.read_bytes()
        except OSError:
            continue
        mode = dest.stat().st_mode & 0o7777 if dest.exists() else 0o644
        atomic_write(dest, data, mode=mode)
        done.append(f"/{rel}")
    try:
        line = _root_shadow_line((running / SHADOW).read_text(encoding="utf-8"))
        new = (slot / SHADOW).read_text(encoding="utf-8")
    except OSError:
        line = None
        new = ""
    if line is not None:
        st = (slot / SHADOW).stat()
        lines = [line if x.startswith("root:") else x for x in new.splitlines()]
        if not any(x.startswith("root:") for x in lines):
            lines.insert(0, line)
        atomic_write(slot / SHADOW, ("\n".join(lines) + "\n").encode(),
                     mode=st.st_mode & 0o7777, uid=st.st_uid, gid=st.st_gid)
        done.append("root's password")
    done += _carry_files(running, slot, service_files() + TLS_FILES)
    share_user = _share_user(running)
    if share_user is not None:
        done += _carry_account(running, slot, share_user)
    done += carry_units(running, slot)
    return done


def seed_slots(env: Mapping[str, str], running: Path = Path("/")) -> list[str]:
    """RAUC's post-install handler: seed every root file system slot just written."""
    done: list[str] = []
    for n in env.get("RAUC_TARGET_SLOTS", "").split():
        if env.get(f"RAUC_SLOT_CLASS_{n}") != "rootfs":
            continue
        device = env.get(f"RAUC_SLOT_DEVICE_{n}", "")
        if not device:
            raise RuntimeError(f"RAUC names no device for target slot {n}")
        # imported here: the runner brings asyncio and tempfile brings shutil, which
        # `prepare` (every boot) does not need
        import tempfile

        from supervisor.drivers.runner import run_sync

        mnt = Path(tempfile.mkdtemp(prefix="twinbeat-seed-", dir="/run"))
        try:
            mounted = run_sync(["mount", "-t", "ext4", device, str(mnt)], timeout=120)
            if not mounted.ok:
                raise RuntimeError(mounted.describe())
            try:
                items = seed_slot(running, mnt)
                done.append(f"{device}: " + ", ".join(items))
            finally:
                unmounted = run_sync(["umount", str(mnt)], timeout=120)
                if not unmounted.ok:
                    raise RuntimeError(unmounted.describe())
        finally:
            mnt.rmdir()
    return done


def run_action(action: str, persist: Path = PERSIST) -> int:
    """Do ``twinbeat persist ACTION``: say what was done, one line each; exit status."""
    try:
        if action == "prepare":
            done = prepare(Path("/"), persist)
        elif action == "save":
            done = save(Path("/"), persist)
        else:
            done = seed_slots(os.environ)
    except (OSError, RuntimeError) as exc:
        print(f"twinbeat: persist {action}: {exc}", file=sys.stderr, flush=True)
        return 1
    for line in done:
        print(f"persist {action}: {line}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    """``twinbeat persist prepare|save|seed-slots`` without the full command line's imports
    (the launcher calls this): twinbeat-persist.service runs ``prepare`` on every boot before
    the bind mounts, so its start-up holds up the network, the supervisor and everything
    after them (12.5 s of a rebooted node's boot under TCG with the full imports)."""
    if len(argv) == 1 and argv[0] in ACTIONS:
        return run_action(argv[0])  # as the units call it: no argparse to import
    import argparse

    parser = argparse.ArgumentParser(
        prog="twinbeat persist", description="The state partition (/persist): prepare "
        "(every boot, before the bind mounts), save (shutdown, before installs), seed-slots "
        "(RAUC's post-install handler).")
    parser.add_argument("action", choices=ACTIONS)
    return run_action(parser.parse_args(argv).action)
