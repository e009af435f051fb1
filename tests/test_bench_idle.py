"""bench.idle's ``--python image``: the wrapper that runs the supervisor on the image's own
interpreter (the tree mkosi installed the image's packages into)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.idle import image_python, image_tree


def _tree(root: Path, pythons: tuple[str, ...]) -> Path:
    """A stand-in for mkosi's tree: a 'loader' that prints what it was asked to run."""
    (root / "usr" / "lib64").mkdir(parents=True)
    (root / "usr" / "bin").mkdir(parents=True)
    loader = root / "usr" / "lib64" / "ld-linux-x86-64.so.2"
    loader.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    loader.chmod(0o755)
    for name in pythons:
        (root / "usr" / "bin" / name).write_text("")
    return root


def test_the_wrapper_runs_the_trees_newest_python3_by_its_loader_and_libraries(
        tmp_path: Path) -> None:
    tree = _tree(tmp_path / "tree", ("python3", "python3.9", "python3.13",
                                     "python3.13-config"))
    (tmp_path / "out").mkdir()
    wrapper = image_python(tmp_path / "out", tree)
    out = subprocess.run([wrapper, "-m", "supervisor", "run", "a b"], check=True,
                         capture_output=True, text=True).stdout.splitlines()
    assert out == ["--library-path", str(tree / "usr" / "lib" / "x86_64-linux-gnu"),
                   str(tree / "usr" / "bin" / "python3.13"), "-m", "supervisor", "run", "a b"]


def test_no_tree_says_to_build_the_image_first(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="make image"):
        image_python(tmp_path, tmp_path / "missing")
    tree = _tree(tmp_path / "tree", ("python3",))  # a loader, but no python3.N
    with pytest.raises(SystemExit, match="no image tree with a python3"):
        image_python(tmp_path, tree)


def test_the_tree_is_named_after_mkosi_conf(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "mkosi.conf"
    conf.write_text("[Distribution]\nDistribution=debian\nRelease=forky\n"
                    "Architecture=arm64\n")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert image_tree(conf) == (tmp_path / "cache" / "twinbeat" / "incremental"
                                / "debian~forky~arm64.cache")
    conf.write_text("[Distribution]\nDistribution=debian\n")
    with pytest.raises(SystemExit, match="sets no Release="):
        image_tree(conf)


def test_byte_compile_leaves_the_interpreters_bytecode_beside_the_sources(
        tmp_path: Path) -> None:
    # as mkosi.postinst's compileall in the image: the measured supervisor loads .pyc files
    import importlib.util
    import sys

    from bench.idle import byte_compile

    (tmp_path / "supervisor" / "core").mkdir(parents=True)
    (tmp_path / "supervisor" / "__init__.py").write_text("")
    (tmp_path / "supervisor" / "core" / "step.py").write_text("X = 1\n")
    byte_compile(tmp_path, sys.executable)
    for source in ("__init__.py", "core/step.py"):
        assert Path(importlib.util.cache_from_source(
            str(tmp_path / "supervisor" / source))).is_file()
    (tmp_path / "supervisor" / "core" / "bad.py").write_text("def (:\n")
    with pytest.raises(subprocess.CalledProcessError):  # a source that does not compile
        byte_compile(tmp_path, sys.executable)
