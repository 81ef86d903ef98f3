"""Parsing the submit form: urlencoded or multipart; uploads are spooled to disk, never to RAM."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import BodyPartReader, web

from libs.errors import DomainError, InvalidInput, TooLarge, UnsupportedMedia

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
)
MAX_FIELD_BYTES = 8 * 1024
_CHUNK = 256 * 1024


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
    request: web.Request, *, max_upload_bytes: int, spool_dir: Path | None
) -> SubmitForm:
    ctype = request.content_type
    if ctype == "multipart/form-data":
        return await _parse_multipart(
            request, max_upload_bytes=max_upload_bytes, spool_dir=spool_dir
        )
    if ctype in ("application/x-www-form-urlencoded", ""):
        try:
            data = await request.post()
        except web.HTTPRequestEntityTooLarge as exc:
            raise TooLarge("form body too large", code="form_too_large") from exc
        except ValueError as exc:
            raise InvalidInput(f"could not parse the form: {exc}", code="invalid_form") from exc
        form = SubmitForm()
        for name in TEXT_FIELDS:
            value = data.get(name)
            if isinstance(value, str):
                form.fields[name] = value
        return form
    raise UnsupportedMedia(
        "send application/x-www-form-urlencoded or multipart/form-data",
        code="unsupported_content_type",
    )


async def _parse_multipart(
    request: web.Request, *, max_upload_bytes: int, spool_dir: Path | None
) -> SubmitForm:
    form = SubmitForm()
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            name = part.name or ""
            if name == "file":
                if form.upload is not None:
                    raise InvalidInput("send exactly one file part", code="duplicate_file")
                form.upload = await _spool(
                    part, max_upload_bytes=max_upload_bytes, spool_dir=spool_dir
                )
            elif name in TEXT_FIELDS:
                raw = await part.read(decode=True)
                if len(raw) > MAX_FIELD_BYTES:
                    raise InvalidInput(f"field {name!r} is too long", code="field_too_long")
                form.fields[name] = raw.decode("utf-8", errors="replace")
            else:
                # Unknown parts are drained so the connection stays usable; their content is ignored.
                while await part.read_chunk(_CHUNK):
                    pass
    except DomainError:
        if form.upload:
            form.upload.discard()
        raise
    except (ValueError, AssertionError, UnicodeDecodeError) as exc:
        if form.upload:
            form.upload.discard()
        raise InvalidInput(
            f"could not parse the multipart body: {exc}", code="invalid_multipart"
        ) from exc
    return form


async def _spool(part: BodyPartReader, *, max_upload_bytes: int, spool_dir: Path | None) -> Upload:
    fd, name = tempfile.mkstemp(prefix="upload-", dir=spool_dir)
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
    return Upload(path=path, filename=part.filename, size=size)
