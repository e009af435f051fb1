"""The one atomic write: mode from the start, fsync of the file and the folder, no leftovers."""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import pytest

from supervisor.atomicfile import atomic_copytree, atomic_write

REPO = Path(__file__).resolve().parent.parent


def test_writes_replaces_and_sets_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "key"
    atomic_write(path, "one\n", mode=0o600, mkdir=True)
    atomic_write(path, b"two\n", mode=0o640)
    assert path.read_text() == "two\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(path.parent) == ["key"]  # no temporary file left


def test_never_replaces_without_replace(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text("mine\n")
    with pytest.raises(FileExistsError):
        atomic_write(path, "theirs\n", replace=False)
    assert path.read_text() == "mine\n"
    assert os.listdir(tmp_path) == ["cluster.toml"]
    atomic_write(tmp_path / "new", "x", replace=False)
    assert (tmp_path / "new").read_text() == "x"


def test_the_file_is_private_before_its_first_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes: list[int] = []
    real_write = os.write

    def spy(fd: int, data: bytes) -> int:  # the temporary file's mode when data goes in
        modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", spy)
    atomic_write(tmp_path / "authkeys", "auth 1\n", mode=0o600)
    assert modes == [0o600]


def test_fsyncs_the_file_and_then_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        synced.append("dir" if os.path.isdir(target) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    atomic_write(tmp_path / "state", "1\n")
    assert synced == ["file", "dir"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state"
    path.write_text("old\n")

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="Input/output"):
        atomic_write(path, "new\n")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["state"]


def test_copytree_puts_a_whole_folder_in_place_once(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("x\n")
    (src / "link").symlink_to("sub/f")
    atomic_copytree(src, tmp_path / "dest", mode=0o700)
    assert (tmp_path / "dest/sub/f").read_text() == "x\n"
    assert os.readlink(tmp_path / "dest/link") == "sub/f"
    assert stat.S_IMODE((tmp_path / "dest").stat().st_mode) == 0o700
    atomic_copytree(None, tmp_path / "empty", mode=0o2755)
    assert os.listdir(tmp_path / "empty") == []
    assert stat.S_IMODE((tmp_path / "empty").stat().st_mode) == 0o2755
    with pytest.raises(FileExistsError):
        atomic_copytree(src, tmp_path / "dest", mode=0o700)
    assert sorted(os.listdir(tmp_path)) == ["dest", "empty", "src"]  # nothing half-made


def test_copytree_leaves_nothing_when_the_copy_fails(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("x")
    os.mkfifo(src / "p")  # shutil refuses to copy a named pipe (even for root)
    with pytest.raises(OSError, match="named pipe"):
        atomic_copytree(src, tmp_path / "dest", mode=0o755)
    assert sorted(os.listdir(tmp_path)) == ["src"]


def test_nothing_else_renames_files_into_place() -> None:
    """One atomic write: no other module of ours calls os.replace, os.rename or mkstemp."""
    found = []
    for folder in ("supervisor", "firstboot"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path.name == "atomicfile.py":
                continue
            found += [
                f"{path.relative_to(REPO)}:{node.lineno}"
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.Attribute)
                and node.attr in ("replace", "rename", "mkstemp", "fsync")
                and isinstance(node.value, ast.Name) and node.value.id in ("os", "tempfile")
            ]
    assert found == []


def test_a_temporary_name_taken_already_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a file (or a symlink planted there) at the first name tried: the write takes another
    taken = tmp_path / f".key.{(b'A' * 6).hex()}.tmp"
    taken.symlink_to(tmp_path / "elsewhere")
    draws = iter([b"A" * 6, b"B" * 6])
    monkeypatch.setattr(os, "urandom", lambda n: next(draws))
    atomic_write(tmp_path / "key", "secret", mode=0o600)
    assert (tmp_path / "key").read_text() == "secret"
    assert not (tmp_path / "elsewhere").exists()  # the symlink was not followed
    assert sorted(os.listdir(tmp_path)) == sorted(["key", taken.name])


def test_no_fresh_name_at_all_is_an_error_not_a_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / f".key.{(b'A' * 6).hex()}.tmp").write_text("")
    monkeypatch.setattr(os, "urandom", lambda n: b"A" * 6)
    with pytest.raises(FileExistsError, match="no fresh temporary name"):
        atomic_write(tmp_path / "key", "x")
    assert not (tmp_path / "key").exists()


def test_the_daemons_writes_do_not_import_tempfile(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("import sys\n"
            "from supervisor.atomicfile import atomic_write, bind_unix\n"
            f"atomic_write({str(tmp_path / 'f')!r}, 'x')\n"
            f"bind_unix({str(tmp_path / 's')!r}).close()\n"
            "print(sorted(m for m in ('tempfile', 'shutil') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert sorted(os.listdir(tmp_path)) == ["f", "s"]  # no temporary file or folder left
