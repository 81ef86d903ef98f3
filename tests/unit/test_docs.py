"""The docs a clone can read: README.md and docs/*.md link only to what the repository holds,
no tracked file points outside the repository, and the README stays a short landing page."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 130
# Places outside the repository that files once named; a clone has none of them.
OUTSIDE = ("../shared", "/work/shared", "shared/speech-dev", 'parent / "shared"')

_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target) and [text](target "title"); images too. Not reference-style links: unused here.
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed (word
    characters, spaces and hyphens stay), spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").replace("*", "")
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub renders for the headings of a markdown file (duplicates get -1, -2)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in _prose_lines(path.read_text()):
        match = _HEADING.match(line)
        if match is None:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    """Link targets outside code blocks and inline code spans."""
    return [
        m.group(1)
        for line in _prose_lines(path.read_text())
        for m in _LINK.finditer(_CODE_SPAN.sub("", line))
    ]


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """The links of `page` that do not resolve inside the repository at `root`."""
    broken: list[str] = []
    for target in links(page):
        if not target:
            broken.append("(empty link)")
            continue
        if _SCHEME.match(target):
            if target.startswith("file:"):
                broken.append(f"{target}: a file URL points outside the repository")
            continue  # http(s), mailto: outside the repository by intent, not a path
        raw_path, _, fragment = target.partition("#")
        raw_path = unquote(raw_path)
        if raw_path.startswith("/"):
            broken.append(f"{target}: absolute path")
            continue
        resolved = (page.parent / raw_path).resolve() if raw_path else page
        if not resolved.is_relative_to(root.resolve()):
            broken.append(f"{target}: outside the repository")
            continue
        if not resolved.exists():
            broken.append(f"{target}: no such file")
            continue
        if fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            broken.append(f"{target}: no heading with anchor #{fragment} in {resolved.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves_inside_the_repository(page: Path) -> None:
    assert broken_links(page) == []


def test_the_checker_sees_what_it_must_refuse(tmp_path: Path) -> None:
    """The link check itself: it must catch each kind of bad link, and pass good ones."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## The `x` part: one/two\n")
    page = tmp_path / "README.md"
    page.write_text(
        "# Title\n\n"
        "[ok](docs/a.md) [ok](docs/a.md#the-x-part-onetwo) [ok](#title) "
        "[ok](https://example.com/x) `[not a link](nowhere.md)`\n"
        "[gone](docs/missing.md) [bad anchor](docs/a.md#nope) [out](../shared/DESIGN.md) "
        "[abs](/work/shared/DESIGN.md) [self](#missing)\n"
        "```\n[in code](nowhere.md)\n```\n"
    )
    assert broken_links(page, root=tmp_path) == [
        "docs/missing.md: no such file",
        "docs/a.md#nope: no heading with anchor #nope in a.md",
        "../shared/DESIGN.md: outside the repository",
        "/work/shared/DESIGN.md: absolute path",
        "#missing: no heading with anchor #missing in README.md",
    ]


def test_slugs_follow_github() -> None:
    assert slug("Conversations: who said what") == "conversations-who-said-what"
    assert slug("What `scripts/up` gives you") == "what-scriptsup-gives-you"
    assert (
        slug("Offline engine (`bench/offline_wer.py`, `offline_gateway.py`)")
        == "offline-engine-benchoffline_werpy-offline_gatewaypy"
    )
    assert slug("Security › Webhooks") == "security--webhooks"


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in out.decode().split("\0") if name and name != "uv.lock"]


def test_no_tracked_file_points_outside_the_repository() -> None:
    offenders: list[str] = []
    for path in _tracked_files():
        if path == Path(__file__).resolve() or not path.is_file():
            continue
        data = path.read_bytes()
        for needle in OUTSIDE:
            if needle.encode() in data:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert offenders == []


def test_the_readme_is_a_landing_page_that_starts_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"
    assert lines[0].startswith("# ")
    assert lines[1] == ""
    assert lines[2].startswith("```")
    assert lines[3].startswith("scripts/up ")
    assert lines[4].startswith("scripts/test ")
    assert lines[5] == "```"


def test_the_readme_first_job_submits_the_demo_recording() -> None:
    """The README's first curl line works on the embedded stack as printed: the recording id
    is the demo row `transcribe up` seeds (tests/acceptance runs the banner's lines for real)."""
    from embedded.demo_data import DEMO_RECORDING_ID

    readme = (ROOT / "README.md").read_text()
    assert f'--data "recording_id={DEMO_RECORDING_ID}&b2_prefix=gateway"' in readme
    assert "http://127.0.0.1:8000/api/media/status/<audio_file_id>" in readme
