"""Client errors of the HTTP API: every one becomes a JSON body with a stable code."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


def bad_request(code: str, detail: str) -> ApiError:
    return ApiError(400, code, detail)


def not_found(detail: str = "not found") -> ApiError:
    return ApiError(404, "not_found", detail)
