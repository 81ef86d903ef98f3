"""The two bodies of a notification mail from plain values: a heading, paragraphs, a table of
fields and an optional link. Every value is passed through html.escape (quotes too) for the HTML
part, so a campaign named `<script>` is shown, never run; a link is only made of an http(s) URL.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from urllib.parse import urlsplit

import msgspec


class Bodies(msgspec.Struct, frozen=True):
    text: str
    html: str


def render(
    heading: str,
    paragraphs: Sequence[str] = (),
    fields: Sequence[tuple[str, str]] = (),
    link: tuple[str, str] | None = None,
) -> Bodies:
    """`link` is (label, url); a url that is not http(s) is shown as text, not linked."""
    text_lines = [heading, ""]
    html_parts = [f"<h2>{_e(heading)}</h2>"]
    for paragraph in paragraphs:
        text_lines += [paragraph, ""]
        html_parts.append(f"<p>{_e(paragraph)}</p>")
    if fields:
        width = max(len(name) for name, _ in fields)
        text_lines += [f"{name.ljust(width)}  {value}" for name, value in fields] + [""]
        rows = "".join(
            f'<tr><th align="left">{_e(name)}</th><td>{_e(value)}</td></tr>'
            for name, value in fields
        )
        html_parts.append(f"<table>{rows}</table>")
    if link is not None:
        label, url = link
        text_lines += [f"{label}: {url}", ""]
        if urlsplit(url).scheme.lower() in ("http", "https"):
            html_parts.append(f'<p><a href="{_e(url)}">{_e(label)}</a></p>')
        else:
            html_parts.append(f"<p>{_e(label)}: {_e(url)}</p>")
    document = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body>\n'
        + "\n".join(html_parts)
        + "\n</body></html>\n"
    )
    return Bodies(text="\n".join(text_lines).rstrip("\n") + "\n", html=document)


def _e(value: str) -> str:
    return html.escape(value, quote=True)
