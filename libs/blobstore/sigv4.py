"""AWS Signature Version 4 for the data plane's path-style object requests (no query string).

botocore's `S3SigV4Auth` signs the same requests in ~0.2 ms (AWSRequest, email-style header
maps, URL re-parsing); this does it in a fraction of that by keeping the day's signing key.
At five requests per transcription that was a tenth of the worker's CPU. The output is checked
byte for byte against botocore's signer in tests/unit/test_sigv4.py.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_host(url: str) -> str:
    """The Host header value a request to `url` carries (and signs): no default port."""
    split = urlsplit(url)
    host = split.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = split.port
    if port is not None and port != _DEFAULT_PORTS.get(split.scheme):
        host = f"{host}:{port}"
    return host


class SigV4Signer:
    def __init__(self, access_key: str, secret_key: str, region: str, service: str = "s3") -> None:
        self._access_key = access_key
        self._secret = ("AWS4" + secret_key).encode()
        self._region = region
        self._service = service
        self._day_key: tuple[str, bytes] = ("", b"")

    def _key_for(self, day: str) -> bytes:
        cached_day, key = self._day_key
        if cached_day != day:
            key = _hmac(self._secret, day)
            for part in (self._region, self._service, "aws4_request"):
                key = _hmac(key, part)
            self._day_key = (day, key)
        return key

    def sign(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        payload_sha256: str,
        now: datetime.datetime | None = None,
    ) -> dict[str, str]:
        """The headers to send: `headers` plus Host, X-Amz-Date, X-Amz-Content-SHA256 and
        Authorization. `url` must be percent-encoded exactly as it will be sent."""
        split = urlsplit(url)
        if split.query:
            raise ValueError("the data plane signs no query strings")
        moment = now or datetime.datetime.now(datetime.UTC)
        amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        out = dict(headers)
        out["Host"] = signing_host(url)
        out["X-Amz-Date"] = amz_date
        out["X-Amz-Content-SHA256"] = payload_sha256
        canonical = {name.lower(): " ".join(value.split()) for name, value in out.items()}
        names = sorted(canonical)
        signed_headers = ";".join(names)
        canonical_request = "\n".join(
            (
                method,
                split.path or "/",
                "",
                "".join(f"{name}:{canonical[name]}\n" for name in names),
                signed_headers,
                payload_sha256,
            )
        )
        scope = f"{day}/{self._region}/{self._service}/aws4_request"
        string_to_sign = "\n".join(
            (ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest())
        )
        signature = hmac.new(
            self._key_for(day), string_to_sign.encode(), hashlib.sha256
        ).hexdigest()
        out["Authorization"] = (
            f"{ALGORITHM} Credential={self._access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )
        return out
