"""A third-party HTTP JSON API (item metadata, typically) as a stream of `RawBatch`es, one per page.

Third-party APIs page, throttle and fail in their own ways, so everything that varies is configuration
(`ApiOptions`): where the records sit in the body, how to ask for the next page (a page number, a cursor
from the body, or a `next` URL), the rate limit, retries and auth. What does not vary is the contract:

- a page is yielded as soon as it arrives, so when a later page fails for good, everything before it has
  already reached the pipeline (which commits batch by batch) and is kept;
- connection errors, timeouts, 429 and 5xx are retried with exponential backoff and jitter, and a server's
  `Retry-After` is obeyed; other 4xx answers and bodies that are not JSON fail at once;
- every failure is an `ApiError` naming the URL (with its page parameters) and the HTTP status;
- an element of the records list that is not a JSON object becomes a broken record, located as
  "page 3, record 7" like every other record, and never costs its neighbours.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Literal
from urllib.parse import urljoin

import httpx
import pandas as pd

from recstack import __version__
from recstack.errors import ApiError, ConfigurationError
from recstack.ingestion.pipeline import RawBatch
from recstack.schema import LOCATION

log = logging.getLogger(__name__)

Paging = Literal["page", "cursor", "next", "none"]
_PAGINGS: Final = ("page", "cursor", "next", "none")
_MISSING: Final = object()
_SNIPPET: Final = 200


@dataclass(frozen=True)
class ApiOptions:
    """How to page through one API and how politely to call it.

    Paths are dotted keys into the JSON body ("data.items"; a numeric part indexes a list); an empty
    `records_path` means the body itself is the list. Paging styles:

    - "page": sends `page_param`=first_page, first_page+1, … (and `per_page_param`=per_page when set);
    - "cursor": sends the value found at `cursor_path` as `cursor_param` on the next request;
    - "next": follows the URL found at `next_path` (relative URLs resolve against the page's URL), or the
      `Link: <…>; rel="next"` header when the body has none;
    - "none": a single request.

    Every style stops at the first empty page (an empty list, or null, at `records_path`), at `max_pages`,
    or when there is no next cursor/URL. `rate_limit` is in requests per second (retries included),
    `burst` how many may go back to back; `auth` is sent as the value of the `auth_header` header.
    """

    records_path: str = ""
    paging: Paging = "page"
    page_param: str = "page"
    per_page_param: str = "per_page"
    per_page: int | None = 100
    first_page: int = 1
    cursor_path: str = "next_cursor"
    cursor_param: str = "cursor"
    next_path: str = "next"
    max_pages: int | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    auth: str | None = field(default=None, repr=False)
    auth_header: str = "Authorization"
    flatten: bool = False
    timeout_s: float = 30.0
    rate_limit: float | None = None
    burst: int = 1
    max_retries: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 300.0

    def __post_init__(self) -> None:
        if self.paging not in _PAGINGS:
            raise ConfigurationError(f"paging must be one of {', '.join(_PAGINGS)}, not {self.paging!r}")
        if self.per_page is not None and self.per_page <= 0:
            raise ConfigurationError(f"per_page must be positive, not {self.per_page}")
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ConfigurationError(f"rate_limit must be positive requests/s, not {self.rate_limit}")
        if self.burst < 1 or self.max_retries < 0 or self.timeout_s <= 0:
            raise ConfigurationError("burst must be ≥ 1, max_retries ≥ 0 and timeout_s > 0")


class TokenBucket:
    """Allows `rate` acquisitions per second on average and at most `burst` back to back.

    Thread-safe; a caller that finds the bucket empty sleeps until its token is due, and the debt is kept,
    so the long-run rate never exceeds `rate` even when sleeps overshoot.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate, self.capacity = rate, float(burst)
        self.clock, self.sleep = clock, sleep
        self.tokens = self.capacity
        self.updated = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping while none is available; returns the seconds slept."""
        with self._lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            self.tokens -= 1.0
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
            if wait > 0:
                self.sleep(wait)
            return wait


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _snippet(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:_SNIPPET] + ("…" if len(text) > _SNIPPET else "")


class ApiClient:
    """GETs JSON from one API under its rate limit, retrying what is worth retrying.

    Pass `client` to supply transport settings (proxies, certificates); it is used as is and not closed.
    `sleep` and `jitter` are injectable so the retry schedule can be tested without waiting.
    """

    def __init__(
        self,
        options: ApiOptions,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.options = options
        self._own = client is None
        self.client = client or httpx.Client(follow_redirects=True)
        self.sleep, self.jitter = sleep, jitter
        self.bucket = TokenBucket(options.rate_limit, options.burst) if options.rate_limit else None
        self.headers = {"Accept": "application/json", "User-Agent": f"recstack/{__version__}"}
        self.headers.update(options.headers)
        if options.auth:
            self.headers[options.auth_header] = options.auth

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._own:
            self.client.close()

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: between half and all of base·2^attempt, capped."""
        ceiling = min(self.options.max_backoff_s, self.options.backoff_s * 2**attempt)
        return ceiling / 2 + self.jitter() * ceiling / 2

    def get_json(self, url: str, params: httpx.QueryParams | None = None) -> tuple[Any, httpx.Response]:
        """GET `url` and return the decoded body with the response; raises ApiError when it cannot."""
        opts = self.options
        shown, status, last = url, None, ""
        for attempt in range(opts.max_retries + 1):
            if self.bucket is not None:
                self.bucket.acquire()
            try:
                response = self.client.get(url, params=params, headers=self.headers, timeout=opts.timeout_s)
            except httpx.TransportError as exc:
                status, last = None, f"{type(exc).__name__}: {exc}"
                wait = self.backoff(attempt)
            else:
                shown, status = str(response.url), response.status_code
                if status != 429 and status < 500:
                    return self._decode(response), response
                last = f"HTTP {status} {response.reason_phrase}".strip()
                asked = retry_after_s(response.headers.get("Retry-After"))
                if asked is not None and asked > opts.max_retry_after_s:
                    raise ApiError(
                        f"GET {shown} answered {status} and asks to wait {asked:.0f}s, more than the "
                        f"{opts.max_retry_after_s:.0f}s allowed", shown, status,
                    )
                wait = asked if asked is not None else self.backoff(attempt)
            if attempt == opts.max_retries:
                break
            log.warning("GET %s: %s; retry %d of %d in %.2fs", shown, last, attempt + 1, opts.max_retries,
                        wait)
            self.sleep(wait)
        attempts = opts.max_retries + 1
        raise ApiError(f"GET {shown} failed after {attempts} attempts; last: {last}", shown, status)

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        shown, status = str(response.url), response.status_code
        if status >= 400:
            raise ApiError(f"GET {shown} answered {status} {response.reason_phrase}: {_snippet(response)}",
                           shown, status)
        try:
            return response.json()
        except ValueError as exc:
            kind = response.headers.get("Content-Type", "no content type")
            raise ApiError(
                f"GET {shown} answered {status} with a body that is not JSON ({kind}; {exc}): "
                f"{_snippet(response)!r}",
                shown, status,
            ) from exc


def dig(body: Any, path: str) -> Any:
    """The value at a dotted `path` in a JSON body ("" is the body); `_MISSING` when a key is absent."""
    value = body
    for part in [p for p in path.split(".") if p]:
        if isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def _page_batch(records: list[Any], page: int, flatten: bool) -> RawBatch:
    objects: list[dict[str, Any]] = []
    locations: list[str] = []
    broken: list[dict[str, str]] = []
    for index, record in enumerate(records, start=1):
        location = f"page {page}, record {index}"
        if isinstance(record, dict):
            objects.append(record)
            locations.append(location)
        else:
            text = json.dumps(record, ensure_ascii=False, default=str)[:10_000]
            broken.append({"location": location, "reason": "not a JSON object", "record": text})
    frame = pd.json_normalize(objects) if flatten and objects else pd.DataFrame.from_records(objects)
    frame[LOCATION] = locations
    return RawBatch(frame, pd.DataFrame(broken, columns=["location", "reason", "record"]))


def _records(body: Any, response: httpx.Response, path: str) -> list[Any]:
    """The list of records at `path`; empty for null (some APIs end with it), ApiError for anything else."""
    shown = str(response.url)
    records = dig(body, path)
    if records is _MISSING:
        keys = ", ".join(list(body)[:10]) if isinstance(body, dict) else type(body).__name__
        raise ApiError(f"GET {shown}: no {path or 'records'} in the body (found: {keys})", shown,
                       response.status_code)
    if records is None:
        return []
    if not isinstance(records, list):
        what = f"{path or 'the body'} is a {type(records).__name__}"
        raise ApiError(f"GET {shown}: {what}, not a list of records", shown, response.status_code)
    return records


def _fingerprint(records: list[Any]) -> str:
    text = json.dumps(records, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def read_api(
    url: str, options: ApiOptions | None = None, client: httpx.Client | None = None
) -> Iterator[RawBatch]:
    """Yield one RawBatch per page of records from the JSON API at `url` (see `ApiOptions` for paging).

    Locations are "page P, record R", P counting requests that returned records from 1, R from 1 within
    the page. Raises ApiError (after yielding every earlier page) when a page fails after all retries, is
    not JSON, has no list at `records_path`, or repeats the previous page (an API ignoring the page
    parameter would otherwise be read forever); ConfigurationError for a URL that is not http(s).
    """
    opts = options or ApiOptions()
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigurationError(f"not a URL: {url!r} ({exc})") from exc
    if target.scheme not in ("http", "https"):
        raise ConfigurationError(f"not an http(s) URL: {url!r}")
    # httpx replaces a URL's query with `params`, so the URL's own parameters join ours explicitly.
    first = target.params.merge(opts.params)
    if opts.paging == "page":
        first = first.set(opts.page_param, str(opts.first_page))
    if opts.paging != "none" and opts.per_page is not None:
        first = first.set(opts.per_page_param, str(opts.per_page))
    params: httpx.QueryParams | None = first
    start, total, page, previous = url, 0, 0, ""
    url = str(target.copy_with(query=None))
    with ApiClient(opts, client) as api:
        while True:
            body, response = api.get_json(url, params)
            records = _records(body, response, opts.records_path)
            if not records:
                break
            fingerprint = _fingerprint(records)
            if fingerprint == previous:
                raise ApiError(f"GET {response.url} returned the same records as the page before; check the "
                               "paging options", str(response.url), response.status_code)
            previous = fingerprint
            page += 1
            total += len(records)
            log.debug("page %d from %s: %d records", page, response.url, len(records))
            yield _page_batch(records, page, opts.flatten)
            if opts.max_pages is not None and page >= opts.max_pages:
                break
            next_request = _next_request(opts, body, response, url, params, page)
            if next_request is None:
                break
            url, params = next_request
    log.info("read %d records in %d pages from %s", total, page, start)


def _next_request(
    opts: ApiOptions,
    body: Any,
    response: httpx.Response,
    url: str,
    params: httpx.QueryParams | None,
    page: int,
) -> tuple[str, httpx.QueryParams | None] | None:
    """The URL and parameters of the page after `page`, or None when there is none."""
    if opts.paging == "page":
        return url, (params or httpx.QueryParams()).set(opts.page_param, str(opts.first_page + page))
    if opts.paging == "cursor":
        cursor = dig(body, opts.cursor_path)
        if cursor is _MISSING or cursor is None or cursor == "":
            return None
        return url, (params or httpx.QueryParams()).set(opts.cursor_param, str(cursor))
    if opts.paging == "next":
        link = dig(body, opts.next_path)
        if link is _MISSING or not link:
            link = response.links.get("next", {}).get("url")
        if not link:
            return None
        # The next URL carries its own query string; adding ours again would duplicate parameters.
        return urljoin(str(response.url), str(link)), None
    return None


__all__ = ["ApiClient", "ApiError", "ApiOptions", "Paging", "TokenBucket", "dig", "read_api", "retry_after_s"]
