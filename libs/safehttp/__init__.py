"""SSRF-guarded outbound HTTP for user-supplied URLs (audio downloads, webhooks)."""

from libs.safehttp.errors import BlockedUrl, SafeHttpError, TooLarge, UpstreamError
from libs.safehttp.fetch import PostResult, SafeHttpClient, SafeResponse
from libs.safehttp.policy import (
    AllowEntry,
    Allowlist,
    CheckedUrl,
    classify_address,
    is_allowlisted,
    parse_allowlist,
    validate_url,
)
from libs.safehttp.resolver import GuardedResolver

__all__ = [
    "AllowEntry",
    "Allowlist",
    "BlockedUrl",
    "CheckedUrl",
    "GuardedResolver",
    "PostResult",
    "SafeHttpClient",
    "SafeHttpError",
    "SafeResponse",
    "TooLarge",
    "UpstreamError",
    "classify_address",
    "is_allowlisted",
    "parse_allowlist",
    "validate_url",
]
