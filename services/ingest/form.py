"""Parsing the submit form: urlencoded or multipart; uploads are spooled to disk, never to RAM.

Every value passes the edge checks (services/ingest/edge.py) while it is read; any failure of
aiohttp's multipart reader (bad boundary, unknown charset,
over-long header lines, a truncated body) is 400 `invalid_multipart`; a body that does not
arrive within INGEST_BODY_READ_TIMEOUT is 408; the spool file is removed on every error path,
a client that disconnects mid-upload included. A Content-Transfer-Encoding other than
7bit/8bit/binary is 400 `invalid_multipart` on every part, file or field (edge.py).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import BadContentDispositionHeader, BadContentDispositionParam

from libs.errors import DomainError, InvalidInput, TimedOut, TooLarge, UnsupportedMedia
from services.ingest import edge

TEXT_FIELDS = (
    "recording_id",
    "url",
    "b2_prefix",
    "phone",
    "campaign",
    "campaign_id",
    "company",
    "callback_url",
    "model",
    "language",
    "timestamps",
    "prompt",
    "audio_ttl",
    "transcript_ttl",
    "multichannel",
    "channel_roles",
    "redact",
    "redact_substitution",
    "redact_keep",
    "redact_audio",
)
MAX_FIELD_BYTES = edge.MAX_FIELD_CHARS
_CHUNK = 256 * 1024
SPOOL_PREFIX = "upload-"
# What aiohttp's form and multipart readers raise on a malformed body (its Content-Disposition
# warnings too, raised where warnings are errors, as under pytest).
_PARSE_ERRORS = (
    ValueError,
    AssertionError,
    LookupError,
    RuntimeError,
    HttpProcessingError,
    web.RequestPayloadError,  # a bad chunk, a Content-Encoding that does not decode
    BadContentDispositionHeader,
    BadContentDispositionParam,
)


@dataclass(slots=True)
class Upload:
    path: Path
    filename: str | None
    size: int

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass(slots=True)
class SubmitForm:
    fields: dict[str, str] = field(default_factory=dict)
    upload: Upload | None = None

    def get(self, name: str) -> str | None:
        value = self.fields.get(name, "").strip()
        return value or None


async def parse_submit_form(
    request: web.Request,
    *,
    max_upload_bytes: int,
    spool_dir: Path | None,
    read_timeout: float | None = None,
    fields: tuple[str, ...] | None = TEXT_FIELDS,
    upload: str | None = "file",
) -> SubmitForm:
    """The form, urlencoded or multipart. `fields`: the text fields kept (None: every one);
    `upload`: the name of the file part (None: no file accepted)."""
    form = SubmitForm()
    try:
        async with asyncio.timeout(read_timeout):
            await _parse(
                request,
                form,
                max_upload_bytes=max_upload_bytes,
                spool_dir=spool_dir,
                fields=fields,
                upload=upload,
            )
    except BaseException as exc:
        if form.upload:
            form.upload.discard()
        if isinstance(exc, TimeoutError):
            raise TimedOut(
                f"the request body did not arrive within {read_timeout:g} s",
                code="body_read_timeout",
            ) from exc
        raise
    return form


async def _parse(
    request: web.Request,
    form: SubmitForm,
    *,
    max_upload_bytes: int,
    spool_dir: Path | None,
    fields: tuple[str, ...] | None,
    upload: str | None,
) -> None:
    ctype = request.content_type
    edge.check_charset(request.charset)
    if ctype == "multipart/form-data":
        await _parse_multipart(
            request,
            form,
            max_upload_bytes=max_upload_bytes,
            spool_dir=spool_dir,
            fields=fields,
            upload=upload,
        )
        return
    if ctype in ("application/x-www-form-urlencoded", ""):
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise TooLarge("form body too large", code="form_too_large") from exc
        except _PARSE_ERRORS as exc:
            raise InvalidInput(f"could not read the form: {exc}", code="invalid_form") from exc
        for name, value in edge.parse_urlencoded(body).items():
            if fields is None or name in fields:
                form.fields[name] = value
        return
    raise UnsupportedMedia(
        "send application/x-www-form-urlencoded or multipart/form-data",
        code="unsupported_content_type",
    )


async def _parse_multipart(
    request: web.Request,
    form: SubmitForm,
    *,
    max_upload_bytes: int,
    spool_dir: Path | None,
    fields: tuple[str, ...] | None,
    upload: str | None,
) -> None:
    seen: set[str] = set()
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if len(seen) >= edge.MAX_FIELDS:
                raise InvalidInput(f"more than {edge.MAX_FIELDS} parts", code="too_many_fields")
            if not isinstance(part, BodyPartReader):
                raise InvalidInput(
                    "nested multipart bodies are not accepted", code="invalid_multipart"
                )
            for header, value in part.headers.items():
                edge.check_value(header, value, what="part header")
            edge.check_transfer_encoding(part.headers)
            name = part.name or ""
            edge.check_value("name", name, limit=256, what="part")
            if name in seen and name == upload:
                raise InvalidInput("send exactly one file part", code="duplicate_file")
            if name in seen:
                raise InvalidInput(f"field {name!r} is sent more than once", code="duplicate_field")
            seen.add(name)
            if upload is not None and name == upload:
                filename = part.filename
                if filename is not None:
                    edge.check_value("filename", filename, limit=1024, what="part")
                form.upload = await _spool(
                    part, filename, max_upload_bytes=max_upload_bytes, spool_dir=spool_dir
                )
            elif fields is None or name in fields:
                raw = bytearray()
                while chunk := await part.read_chunk(_CHUNK):
                    raw += chunk
                    if len(raw) > MAX_FIELD_BYTES * 4:  # even base64-encoded, too long
                        raise InvalidInput(f"field {name!r} is too long", code="field_too_long")
                value = edge.decode_text(name, bytes(part.decode(bytes(raw))))
                edge.check_value(name, value, limit=MAX_FIELD_BYTES)
                form.fields[name] = value
            else:
                # Unknown parts are drained so the connection stays usable; their content is ignored.
                while await part.read_chunk(_CHUNK):
                    pass
    except DomainError:
        raise
    except _PARSE_ERRORS as exc:
        raise InvalidInput(
            f"could not parse the multipart body: {exc}", code="invalid_multipart"
        ) from exc


async def _spool(
    part: BodyPartReader, filename: str | None, *, max_upload_bytes: int, spool_dir: Path | None
) -> Upload:
    fd, name = tempfile.mkstemp(prefix=SPOOL_PREFIX, dir=spool_dir)
    path = Path(name)
    size = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            while chunk := await part.read_chunk(_CHUNK):
                size += len(chunk)
                if size > max_upload_bytes:
                    raise TooLarge(f"the upload exceeds the limit of {max_upload_bytes} bytes")
                fh.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink(missing_ok=True)
        raise InvalidInput("the uploaded file is empty", code="empty_file")
    return Upload(path=path, filename=filename, size=size)


def clean_spool(spool_dir: Path) -> int:
    """Create the spool directory (owner-only) and remove uploads a previous run left behind
    (a crash, a kill -9). The directory belongs to one process: never share it."""
    spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    removed = 0
    for leftover in spool_dir.glob(SPOOL_PREFIX + "*"):
        leftover.unlink(missing_ok=True)
        removed += 1
    return removed
