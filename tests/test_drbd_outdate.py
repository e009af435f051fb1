"""drbd.outdate_replica (the peer asked us to outdate our replica) against a fake drbdadm."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from supervisor.drivers.drbd import outdate_replica

DRBDADM = """#!/bin/sh
# A fake drbdadm: role and disk state in files under {root}; `outdate` exits with the status
# in outdate_rc (0 marks the disk Outdated) after refusing "while Connected" as many times
# as the file `connected` says.
r="{root}"
echo "$*" >> "$r/calls"
case "$1" in
  outdate)
    if [ -e "$r/connected" ]; then
      n=$(cat "$r/connected")
      if [ "$n" -gt 0 ]; then
        echo $((n - 1)) > "$r/connected"
        echo "State change failed: (-15) Refusing to be Outdated while Connected" >&2
        exit 11
      fi
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
    assert calls(fake) == ["outdate r0"]
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


def test_refused_while_still_connected_is_retried(fake: Path):
    (fake / "connected").write_text("2\n")  # this side notices the broken link a bit later
    assert outdate(fake) == "outdated"
    assert calls(fake) == ["outdate r0"] * 3


def test_still_connected_at_the_timeout_fails(fake: Path, caplog: pytest.LogCaptureFixture):
    (fake / "connected").write_text("1000\n")
    with caplog.at_level(logging.ERROR, logger="twinbeat.drbd"):
        assert outdate(fake, timeout=1.2) == "failed"
    n = calls(fake).count("outdate r0")
    assert 2 <= n <= 4
    assert "while Connected" in caplog.text


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
