"""drbd.outdate_replica (the peer asked us to outdate our replica) against a fake drbdadm."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from supervisor.drivers.drbd import outdate_replica

DRBDADM = """#!/bin/sh
# A fake drbdadm: role and disk state in files under {root}; `outdate` exits with the status
# in outdate_rc (0 marks the disk Outdated), unless the file `connected` exists (this side
# still sees the replication link): then it refuses "while Connected", or with the file
# `connected-rc0` exits 0 and leaves the disk as it is (what 8.4.11 did in the QEMU pair).
# `disconnect` drops the link unless `stuck` exists.
r="{root}"
echo "$*" >> "$r/calls"
case "$1" in
  disconnect) [ -e "$r/stuck" ] && exit 10; rm -f "$r/connected" ;;
  connect) ;;
  outdate)
    if [ -e "$r/connected" ]; then
      [ -e "$r/connected-rc0" ] && exit 0
      echo "State change failed: (-15) Refusing to be Outdated while Connected" >&2
      exit 11
    fi
    rc=$(cat "$r/outdate_rc")
    if [ "$rc" = 0 ]; then printf 'Outdated/DUnknown\\n' > "$r/dstate"; fi
    if [ "$rc" != 0 ]; then cat "$r/outdate_err" >&2; fi
    exit "$rc" ;;
  role) cat "$r/role" ;;
  dstate) cat "$r/dstate" ;;
  *) exit 1 ;;
esac
"""


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    script = tmp_path / "drbdadm"
    script.write_text(DRBDADM.format(root=tmp_path))
    script.chmod(0o755)
    (tmp_path / "role").write_text("Secondary/Unknown\n")
    (tmp_path / "dstate").write_text("UpToDate/DUnknown\n")
    (tmp_path / "outdate_rc").write_text("0\n")
    (tmp_path / "outdate_err").write_text("")
    return tmp_path


def outdate(root: Path, timeout: float = 5.0) -> str:
    return asyncio.run(outdate_replica("r0", str(root / "drbdadm"), timeout))


def calls(root: Path) -> list[str]:
    return (root / "calls").read_text().splitlines()


def refuse(root: Path, rc: int, stderr: str) -> None:
    (root / "outdate_rc").write_text(f"{rc}\n")
    (root / "outdate_err").write_text(stderr + "\n")


def test_secondary_up_to_date_is_outdated(fake: Path):
    assert outdate(fake) == "outdated"
    assert calls(fake) == ["outdate r0", "dstate r0"]  # exit 0 is checked, not believed
    assert (fake / "dstate").read_text().startswith("Outdated/")


def test_already_outdated_counts_as_outdated(fake: Path):
    (fake / "dstate").write_text("Outdated/DUnknown\n")
    refuse(fake, 11, "State change failed: nothing to do")
    assert outdate(fake) == "outdated"


def test_primary_refuses(fake: Path):
    (fake / "role").write_text("Primary/Unknown\n")
    refuse(fake, 11, "State change failed: (-2) Need access to UpToDate data")
    assert outdate(fake) == "primary"
    assert calls(fake)[:2] == ["outdate r0", "role r0"]


def test_drbdmeta_status_17_means_primary(fake: Path):
    (fake / "role").write_text("")  # the role query says nothing useful
    refuse(fake, 17, "outdate failed")
    assert outdate(fake) == "primary"


@pytest.mark.parametrize("disk", ["Inconsistent", "Diskless"])
def test_inconsistent_or_diskless_replica(fake: Path, disk: str):
    (fake / "dstate").write_text(f"{disk}/DUnknown\n")
    refuse(fake, 5, "outdate refused")
    assert outdate(fake) == "inconsistent"


def test_refused_while_still_connected_drops_the_link_then_outdates(fake: Path):
    (fake / "connected").touch()  # this side has not noticed the broken link yet
    assert outdate(fake) == "outdated"
    assert calls(fake) == ["outdate r0", "disconnect r0", "outdate r0", "dstate r0",
                           "connect r0"]


def test_exit_0_while_connected_is_not_believed(fake: Path):
    # seen in the QEMU pair: `drbdadm outdate` exited 0 while DRBD still saw the peer, and
    # the disk stayed UpToDate
    (fake / "connected").touch()
    (fake / "connected-rc0").touch()
    assert outdate(fake) == "outdated"
    assert calls(fake) == ["outdate r0", "dstate r0", "disconnect r0", "outdate r0",
                           "dstate r0", "connect r0"]
    assert (fake / "dstate").read_text().startswith("Outdated/")


def test_a_link_that_cannot_be_dropped_fails(fake: Path, caplog: pytest.LogCaptureFixture):
    (fake / "connected").touch()
    (fake / "stuck").touch()
    with caplog.at_level(logging.ERROR, logger="twinbeat.drbd"):
        assert outdate(fake) == "failed"
    assert "while Connected" in caplog.text
    assert (fake / "dstate").read_text().startswith("UpToDate/")


def test_any_other_failure_is_failed_and_logged(fake: Path, caplog: pytest.LogCaptureFixture):
    refuse(fake, 20, "Device is held open by someone")
    with caplog.at_level(logging.ERROR, logger="twinbeat.drbd"):
        assert outdate(fake) == "failed"
    assert "cannot outdate the local replica (disk UpToDate)" in caplog.text
    assert "held open by someone" in caplog.text
    assert "exited with status 20" in caplog.text


def test_missing_drbdadm_is_failed(tmp_path: Path):
    result = asyncio.run(outdate_replica("r0", str(tmp_path / "no-such-drbdadm"), 2.0))
    assert result == "failed"
