"""scripts/apt-sources.py: apt sources for mkosi and for bookworm-backports, derived from the
machine's own apt configuration (deb822 and one-line formats)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("apt_sources",
                                                  ROOT / "scripts" / "apt-sources.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["apt_sources"] = module
    spec.loader.exec_module(module)
    return module


aps = _load()

DEB822 = """\
Types: deb
# a comment
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: https://vendor.invalid/linux/debian
Suites: bookworm
Components: stable
Signed-By: /etc/apt/keyrings/vendor.asc
"""


def test_deb822_parses_every_stanza():
    entries = aps.deb822_entries(DEB822)
    assert [e.suites for e in entries] == [
        ("bookworm", "bookworm-updates"), ("bookworm-security",), ("bookworm",)]
    assert entries[0].components == ("main", "contrib")


def test_third_party_entry_for_the_same_suite_is_not_taken_for_debian():
    vendor_first = DEB822.split("\n\n", 2)[2] + "\n\n" + DEB822
    entries = aps.deb822_entries(vendor_first)
    main = aps.find(entries, "")
    assert main is not None and main.uris == ("http://mirror.invalid/debian",)


def test_image_sources_use_the_machines_uris_with_the_image_release():
    text = aps.render_image("trixie", aps.deb822_entries(DEB822))
    stanzas = [s for s in text.split("\n\n") if "Types:" in s]
    assert "URIs: http://mirror.invalid/debian\n" in stanzas[0]
    assert "Suites: trixie trixie-updates\n" in stanzas[0]
    assert "URIs: http://mirror.invalid/debian-security\n" in stanzas[1]
    assert "Suites: trixie-security\n" in stanzas[1]
    assert "bookworm" not in text and "debug" not in text and "vendor" not in text


def test_image_sources_without_security_entry_warn_and_keep_the_archive(capsys):
    only_main = DEB822.split("\n\n", 1)[0]
    text = aps.render_image("trixie", aps.deb822_entries(only_main))
    assert "trixie-security" not in text and "Suites: trixie trixie-updates" in text
    assert "no Debian security archive" in capsys.readouterr().err


def test_no_debian_entry_is_a_clear_error():
    with pytest.raises(SystemExit, match="no Debian archive entry"):
        aps.render_image("trixie", [])


def test_backports_copies_the_entry_of_the_codename_with_the_suite_changed():
    text = aps.render_backports("bookworm", aps.deb822_entries(DEB822))
    assert "URIs: http://mirror.invalid/debian\n" in text
    assert "Suites: bookworm-backports\n" in text
    assert "Components: main contrib\n" in text
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in text


def test_backports_for_a_codename_the_machine_does_not_use_fails():
    with pytest.raises(SystemExit, match="no apt source for suite 'bullseye'"):
        aps.render_backports("bullseye", aps.deb822_entries(DEB822))


def test_one_line_format_with_options():
    text = ("deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
            "http://mirror.invalid/debian bookworm main non-free-firmware  # trailing\n"
            "# deb http://old.invalid/debian buster main\n"
            "deb-src http://mirror.invalid/debian bookworm main\n")
    entries = aps.oneline_entries(text)
    assert len(entries) == 1
    assert entries[0].uris == ("http://mirror.invalid/debian",)
    assert entries[0].components == ("main", "non-free-firmware")
    assert entries[0].is_debian()


def test_disabled_and_source_only_stanzas_are_ignored():
    text = ("Types: deb\nURIs: http://a.invalid/debian\nSuites: bookworm\nEnabled: no\n\n"
            "Types: deb-src\nURIs: http://b.invalid/debian\nSuites: bookworm\n")
    assert aps.deb822_entries(text) == []


def test_main_writes_the_file_only_when_its_content_changes(tmp_path, monkeypatch):
    monkeypatch.setattr(aps, "machine_entries", lambda skip=None: aps.deb822_entries(DEB822))
    out = tmp_path / "etc" / "mkosi.sources"
    assert aps.main(["apt-sources.py", "image", "trixie", str(out)]) == 0
    first = out.stat().st_mtime_ns
    assert aps.main(["apt-sources.py", "image", "trixie", str(out)]) == 0
    assert out.stat().st_mtime_ns == first
    assert aps.main(["apt-sources.py", "bogus", "trixie", str(out)]) == 2
