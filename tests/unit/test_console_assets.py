"""The built console committed in services/ingest/console_assets/ matches its sources in
console/: whoever changes console/ must run `npm ci && npm run build` (console/README: docs/console.md)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "console"
ASSETS = ROOT / "services" / "ingest" / "console_assets"


def source_files() -> list[str]:
    """As console/scripts/after-build.mjs:sourceFiles."""
    files = ["index.html", "vite.config.js", "package.json", "package-lock.json"]
    for folder in ("src", "scripts"):
        files += [
            p.relative_to(CONSOLE).as_posix() for p in (CONSOLE / folder).rglob("*") if p.is_file()
        ]
    return sorted(files)


def source_hash() -> str:
    digest = hashlib.sha256()
    for rel in source_files():
        data = (CONSOLE / rel).read_bytes()
        digest.update(f"{rel}\n{len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()


def test_committed_build_matches_the_sources() -> None:
    recorded = (ASSETS / "SOURCE_HASH").read_text().strip()
    assert recorded == source_hash(), (
        "services/ingest/console_assets is stale: run `cd console && npm ci && npm run build` "
        "and commit the result"
    )


def test_the_page_loads_only_built_files_of_its_own() -> None:
    page = (ASSETS / "index.html").read_text()
    refs = [r for r in re.findall(r'(?:src|href)="([^"]+)"', page) if not r.startswith("#")]
    assert refs
    for ref in refs:
        assert ref.startswith("/console/assets/"), ref
        assert (ASSETS / "assets" / ref.removeprefix("/console/assets/")).is_file(), ref
    assert "__CSP_NONCE__" in page


def test_dependencies_are_pinned_and_licences_listed() -> None:
    import json

    package = json.loads((CONSOLE / "package.json").read_text())
    for deps in (package["dependencies"], package["devDependencies"]):
        for name, version in deps.items():
            assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned: {version}"
    licences = (ASSETS / "THIRD_PARTY_LICENSES.md").read_text()
    assert "wavesurfer.js 8.0.1: BSD-3-Clause" in licences
