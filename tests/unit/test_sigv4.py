"""The data plane's SigV4 signer agrees byte for byte with botocore's S3 signer."""

from __future__ import annotations

import datetime
import hashlib
from urllib.parse import quote

import pytest
from botocore import auth as botocore_auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from libs.blobstore.sigv4 import EMPTY_SHA256, SigV4Signer, signing_host

MOMENT = datetime.datetime(2026, 11, 24, 23, 59, 58, tzinfo=datetime.UTC)


def _botocore(
    method: str,
    url: str,
    headers: dict[str, str],
    data: bytes,
    region: str,
    monkeypatch: pytest.MonkeyPatch,
    moment: datetime.datetime = MOMENT,
) -> dict[str, str]:
    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda: moment)
    request = AWSRequest(method=method, url=url, data=data or None, headers=dict(headers))
    botocore_auth.S3SigV4Auth(Credentials("AKIDEXAMPLE", "s3cr3t/+key"), "s3", region).add_auth(
        request
    )
    return dict(request.headers.items())


CASES = [
    ("PUT", "http://127.0.0.1:8333/bucket/a/b.json", {"Content-Type": "application/json"}, b"{}"),
    ("GET", "http://127.0.0.1:8333/bucket/a/b.wav", {}, b""),
    ("PUT", "https://s3.us-west-004.backblazeb2.com/calls/x.txt", {"Content-Type": "text/plain"}, b"x"),
    ("GET", "http://localhost:80/bucket/k", {}, b""),
    ("GET", "https://[::1]:9000/bucket/k", {}, b""),
    ("PUT", "http://s3.local/bucket/" + quote("with space/caf\u00e9/100% + ~=!.txt", safe="/~"),
     {"Content-Type": "text/plain;  charset=utf-8"}, b"payload"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "url", "headers", "data"), CASES)
@pytest.mark.parametrize("region", ["us-east-1", "eu-central-003"])
def test_signature_matches_botocore(
    method: str,
    url: str,
    headers: dict[str, str],
    data: bytes,
    region: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = _botocore(method, url, headers, data, region, monkeypatch)
    payload = hashlib.sha256(data).hexdigest() if data else EMPTY_SHA256
    ours = SigV4Signer("AKIDEXAMPLE", "s3cr3t/+key", region).sign(
        method, url, headers, payload, now=MOMENT
    )
    assert ours["Authorization"] == expected["Authorization"]
    assert ours["X-Amz-Date"] == expected["X-Amz-Date"]
    assert ours["X-Amz-Content-SHA256"] == expected["X-Amz-Content-SHA256"]
    assert ours["Host"] == signing_host(url)


def test_day_key_is_renewed_at_midnight(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = SigV4Signer("AKIDEXAMPLE", "s3cr3t/+key", "us-east-1")
    url = "http://127.0.0.1:8333/bucket/k"
    for moment in (MOMENT, MOMENT + datetime.timedelta(seconds=3), MOMENT):
        expected = _botocore("GET", url, {}, b"", "us-east-1", monkeypatch, moment)
        ours = signer.sign("GET", url, {}, EMPTY_SHA256, now=moment)
        assert ours["Authorization"] == expected["Authorization"]


def test_wrong_secret_changes_the_signature() -> None:
    url = "http://127.0.0.1:8333/bucket/k"
    a = SigV4Signer("AK", "one", "us-east-1").sign("GET", url, {}, EMPTY_SHA256, now=MOMENT)
    b = SigV4Signer("AK", "two", "us-east-1").sign("GET", url, {}, EMPTY_SHA256, now=MOMENT)
    assert a["Authorization"] != b["Authorization"]


def test_query_strings_are_refused() -> None:
    with pytest.raises(ValueError, match="query"):
        SigV4Signer("AK", "SK", "us-east-1").sign(
            "GET", "http://h/bucket/k?uploads", {}, EMPTY_SHA256
        )


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://127.0.0.1:80/b/k", "127.0.0.1"),
        ("https://s3.example.com:443/b/k", "s3.example.com"),
        ("http://s3.example.com:443/b/k", "s3.example.com:443"),
        ("https://[::1]:9000/b/k", "[::1]:9000"),
    ],
)
def test_signing_host_drops_only_default_ports(url: str, host: str) -> None:
    assert signing_host(url) == host
