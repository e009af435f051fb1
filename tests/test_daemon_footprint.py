"""What `twinbeat run` leaves out of the daemon's memory: the other commands' parsers and
the update commands' modules (cli.parser's ``daemon``), asyncio's TLS half
(supervisor.notls); neither changes what the command says or refuses."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.cli.parser import build_parser

ROOT = Path(__file__).resolve().parent.parent


def said(daemon: bool, argv: list[str]) -> tuple[object, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            result: object = vars(build_parser(daemon=daemon).parse_args(argv))
        except SystemExit as exc:
            result = ("exit", exc.code)
    return result, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(("argv", "outcome"), [
    (["run", "--help"], "help"),
    (["run", "--config", "/etc/x.toml", "--node", "node2", "-v"], "parsed"),
    (["run", "--bogus"], "refused"),
    (["run", "extra"], "refused"),
    (["run"], "parsed"),
])
def test_the_daemons_parser_says_and_refuses_what_the_whole_one_does(argv: list[str],
                                                                      outcome: str):
    whole = said(False, argv)
    assert said(True, argv) == whole
    result, out, err = whole
    if outcome == "help":
        assert result == ("exit", 0) and "usage:" in out and "--config" in out and not err
    elif outcome == "parsed":
        assert isinstance(result, dict) and result["command"] == "run" and not out and not err
    else:
        assert result == ("exit", 2) and "usage:" in err and "error:" in err and not out


def test_the_help_is_as_wide_as_shutil_would_make_it(monkeypatch: pytest.MonkeyPatch):
    """cli.parser finds the width without shutil (kept out of the daemon): the same width."""
    import shutil

    from supervisor.cli.parser import terminal_columns

    for columns in ("", "0", "-3", "wide", "132", "40"):
        monkeypatch.setenv("COLUMNS", columns)
        assert terminal_columns() == shutil.get_terminal_size().columns, columns


def probe(code: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    result: dict[str, object] = json.loads(out.stdout.splitlines()[-1])
    return result


def test_twinbeat_run_loads_no_tls_and_no_update_commands(tmp_path: Path):
    result = probe(
        "import json, sys\n"
        "from supervisor.cli import main\n"
        f"rc = main(['run', '--config', {str(tmp_path / 'missing.toml')!r}])\n"
        "import asyncio\n"
        "print(json.dumps({'rc': rc, 'ssl': 'ssl' in sys.modules,\n"
        "    'openssl': '_hashlib' in sys.modules or 'hashlib' in sys.modules,\n"
        "    'lifecycle': 'supervisor.lifecycle.cli' in sys.modules,\n"
        "    'asyncio_tls': asyncio.base_events.ssl is not None}))\n")
    # the configuration is missing: refused after the options were parsed
    assert result == {"rc": 1, "ssl": False, "lifecycle": False, "openssl": False,
                      "asyncio_tls": False}


def test_tls_still_loads_where_it_is_used_after_notls():
    result = probe(
        "import json, sys\n"
        "import supervisor.notls\n"
        "import smtplib, ssl\n"
        "ssl.create_default_context()\n"
        "print(json.dumps({'smtplib_tls': smtplib._have_ssl, 'ssl': 'ssl' in sys.modules}))\n")
    assert result == {"smtplib_tls": True, "ssl": True}


def test_notls_does_nothing_when_asyncio_is_imported_first():
    result = probe(
        "import json, asyncio\n"
        "from supervisor.notls import asyncio_without_tls\n"
        "print(json.dumps({'done': asyncio_without_tls(),\n"
        "    'asyncio_tls': asyncio.base_events.ssl is not None}))\n")
    assert result == {"done": False, "asyncio_tls": True}


def test_another_command_still_sees_every_command():
    _, out, _ = said(False, ["--help"])
    assert "install" in out and "upgrade" in out and "run" in out


@pytest.mark.parametrize("columns", ["60", "132", "", "junk"])
def test_the_help_is_as_wide_as_argparse_makes_it(columns: str,
                                                  monkeypatch: pytest.MonkeyPatch):
    # argparse's own formatter (it asks shutil for the width) and ours, on the same text
    import argparse

    from supervisor.cli.parser import HelpFormatter

    monkeypatch.setenv("COLUMNS", columns)
    helps = []
    for formatter in (argparse.HelpFormatter, HelpFormatter):
        p = argparse.ArgumentParser(prog="twinbeat run", formatter_class=formatter,
                                    description="word " * 60)
        p.add_argument("--state-dir", metavar="DIR", help="state directory " * 10)
        helps.append(p.format_help())
    assert helps[0] == helps[1]
    assert max(map(len, helps[1].splitlines())) <= (int(columns) if columns.isdigit()
                                                     else 80)


def test_twinbeat_run_does_not_load_shutil(tmp_path: Path):
    result = probe(
        "import json, sys\n"
        "from supervisor.cli import main\n"
        f"rc = main(['run', '--config', {str(tmp_path / 'missing.toml')!r}])\n"
        "print(json.dumps({'rc': rc, 'shutil': 'shutil' in sys.modules}))\n")
    assert result == {"rc": 1, "shutil": False}


@pytest.mark.parametrize("data", [b"", b"abc", b"x" * 63, b"y" * 64, b"z" * 1000])
def test_the_daemons_sha256_is_hashlibs_without_openssl(data: bytes):
    import hashlib

    from supervisor.core.sha256 import compare_digest, sha256

    assert sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
    assert sha256.__module__ != "_hashlib"  # CPython's own, not OpenSSL's
    assert compare_digest(data, bytes(data)) is True
    assert compare_digest(data, data + b"!") is False
    if data:
        assert compare_digest(data, bytes([data[0] ^ 1]) + data[1:]) is False
