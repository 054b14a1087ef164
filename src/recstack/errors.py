"""One exception hierarchy for the whole platform.

Each error knows the HTTP status it maps to and the CLI exit code, so the API and the CLI each translate
errors in exactly one place.
"""

from __future__ import annotations


class RecstackError(Exception):
    """Base of every error recstack raises on purpose."""

    status_code: int = 500
    exit_code: int = 1
    headers: dict[str, str] | None = None


class ConfigurationError(RecstackError):
    """Settings or arguments that cannot work together."""

    status_code = 500
    exit_code = 2


class InvalidRecord(RecstackError):
    """A record that fails validation; `location` names where it came from."""

    status_code = 422

    def __init__(self, reason: str, location: str | None = None) -> None:
        self.reason = reason
        self.location = location
        super().__init__(f"{location}: {reason}" if location else reason)


class NotFound(RecstackError):
    status_code = 404


class Unauthenticated(RecstackError):
    """A request without a key, or with a key that is unknown, malformed or revoked."""

    status_code = 401

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers = {"WWW-Authenticate": 'Bearer realm="recstack"'}


class Forbidden(RecstackError):
    """A valid key whose scope does not include what the request needs."""

    status_code = 403


class RateLimited(RecstackError):
    """The caller's token bucket is empty; `retry_after_s` says when one request will be allowed again."""

    status_code = 429

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        seconds = max(1, int(-(-retry_after_s // 1)))
        self.headers = {"Retry-After": str(seconds)}
        super().__init__(f"rate limit exceeded: retry after {seconds} s")


class Conflict(RecstackError):
    """A request the current state forbids (a key revoking itself)."""

    status_code = 409


class PayloadTooLarge(RecstackError):
    """A request body (or a batch in it) over the configured limit."""

    status_code = 413


class BackendUnavailable(RecstackError):
    """A configured server (database, cache, broker) cannot be reached."""

    status_code = 503
    exit_code = 3


class MissingExtra(RecstackError):
    """An optional dependency is not installed; the message names the extra to install."""

    exit_code = 2

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(f"{module} is not installed: pip install 'recstack[{extra}]'")


class RejectedRecords(RecstackError):
    """An ingestion run rejected records and was not told to tolerate it."""

    exit_code = 4


class ChecksumMismatch(RecstackError):
    """A downloaded archive is not the one the registry expects (corrupt, truncated or changed upstream)."""


class ApiError(RecstackError):
    """An HTTP API answered with an error, with something that is not JSON, or not at all.

    `url` is the request's full URL (page parameters included); `status` is the HTTP status of the last
    answer, or None when the server never answered.
    """

    status_code = 502
    exit_code = 3

    def __init__(self, message: str, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class EngineFailure(RecstackError):
    """A batch job on a distributed engine (Spark) failed; the message names the job and, when known, why."""

    exit_code = 7


class BackupError(RecstackError):
    """A backup archive that is not one, fails its checksums, or a dump or restore tool that failed."""

    exit_code = 6
