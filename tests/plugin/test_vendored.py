"""The vendored scripts are the files VENDORED.md names, unchanged (a page must never load something
else under their name)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENDORED = ROOT / "plugin" / "web" / "static" / "vendor" / "VENDORED.md"


def _listed() -> list[tuple[Path, str]]:
    text = VENDORED.read_text(encoding="utf-8")
    rows = [(ROOT / "plugin/web/static/vendor" / m.group(1), m.group(2))
            for m in re.finditer(r"^\| (\S+\.js) \|.*\| ([0-9a-f]{64}) \|$", text, re.M)]
    m = re.search(r"`tests/vendor/axe\.min\.js`.*?sha256 ([0-9a-f]{64})", text, re.S)
    assert m, "VENDORED.md names the axe-core file and its hash"
    return [*rows, (ROOT / "tests/vendor/axe.min.js", m.group(1))]


@pytest.mark.parametrize(("path", "digest"), _listed(), ids=lambda v: getattr(v, "name", ""))
def test_vendored_file_is_unchanged(path: Path, digest: str) -> None:
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_every_vendored_script_is_listed() -> None:
    listed = {p.name for p, _ in _listed()}
    present = {p.name for p in (ROOT / "plugin/web/static/vendor").glob("*.js")}
    assert present <= listed
