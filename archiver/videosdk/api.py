"""Client for VideoSDK's REST API: list, fetch and delete recordings of every kind, list rooms and
sessions, fetch the webhook key. Paths come from ``videosdk_items.ENDPOINTS`` (below the API's origin:
recordings under /v2, transcripts under /ai/v1); paging from ``videosdk_paging``.

Auth is a short-lived HS256 JWT sent raw in ``Authorization`` (no "Bearer"), minted from the API key
and the secret in ``VIDEOSDK_SECRET_KEY``. 429/5xx, timeouts and connection errors are retried with
exponential backoff and full jitter (Retry-After honoured); other failures raise at once. Errors
carry a stable ``code`` and ``retryable`` and name the method and path only: never the query string,
the token, the secret or the Authorization header.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import jwt

from archiver.domain.recordings import RecordingKind
from archiver.retry import Backoff, retrying
from archiver.videosdk.items import ENDPOINTS
from archiver.videosdk.paging import PagingError, walk

log = logging.getLogger(__name__)

TOKEN_LIFETIME = 600  # seconds
TOKEN_MARGIN = 60  # mint a new token this long before the old one expires, so it never expires in flight
PER_PAGE = 20  # VideoSDK's own default page sizes are 10 or 20; larger ones are not documented
ROOMS, SESSIONS = "/v2/rooms", "/v2/sessions"  # below the API's origin
MAX_DELAY = 60.0  # cap for both Retry-After and the backoff ceiling: a worker should not sleep for hours


class VideoSDKError(Exception):
    """``code``: unauthorized, forbidden, missing_credentials, not_found, rate_limited, http_status,
    timeout, connection, bad_response. ``retryable`` is True for rate_limited, 5xx, timeout, connection."""

    def __init__(self, message: str, code: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.retry_after: float | None = None  # seconds the server asked us to wait (Retry-After)


class VideoSDKAuthError(VideoSDKError):
    """Credentials missing or refused (401/403); retrying with the same credentials cannot help."""


class VideoSDKClient:
    """Thread-safe; close() (or ``with``) releases the connection pool if the client created it."""

    def __init__(self, api_base: str, *, api_key: str | None = None, secret: str | None = None,
                 timeout: float = 30.0, max_attempts: int = 5, backoff: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep, client: httpx.Client | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.api_base = api_base.rstrip("/")
        self.api_key, self._secret = api_key or None, secret or None
        self.max_attempts, self.backoff = max_attempts, backoff
        self._sleep, self._clock = sleep, clock
        self._owns_client = client is None
        # no redirects: the API has none, and following one would carry the token somewhere unplanned
        self._http = client or httpx.Client(follow_redirects=False)
        self._timeout = httpx.Timeout(timeout)  # per request, so it applies to a caller's client too
        self._lock = threading.Lock()
        self._token: tuple[str, float] | None = None  # (jwt, exp)

    @classmethod
    def from_settings(cls, settings: Any) -> VideoSDKClient:
        sdk = settings.videosdk
        return cls(sdk.api_base, api_key=sdk.api_key, secret=os.environ.get("VIDEOSDK_SECRET_KEY"),
                   timeout=sdk.timeout)

    def close(self) -> None:
        if self._owns_client:
            self._http.close()

    @property
    def closed(self) -> bool:
        """Whether its connection pool is closed (no request can be sent any more)."""
        return self._http.is_closed

    def __enter__(self) -> VideoSDKClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def token(self) -> str:
        if not self.api_key or not self._secret:
            raise VideoSDKAuthError("api_key and VIDEOSDK_SECRET_KEY are required to call the VideoSDK REST API "
                                    "(set videosdk.api_key and the VIDEOSDK_SECRET_KEY environment variable)",
                                    "missing_credentials")
        now = self._clock()
        with self._lock:
            if self._token is None or now >= self._token[1] - TOKEN_MARGIN:
                iat = int(now)
                payload = {"apikey": self.api_key, "permissions": ["allow_join"], "version": 2,
                           "roles": ["crawler"], "iat": iat, "exp": iat + TOKEN_LIFETIME}
                self._token = (jwt.encode(payload, self._secret, algorithm="HS256"), iat + TOKEN_LIFETIME)
            return self._token[0]

    def public_key(self) -> str:
        # the endpoint is public; the token is sent when we have one in case an account requires it
        body = self._json("GET", "/public/rsa-public-key", auth=bool(self.api_key and self._secret))
        pem = body.get("publicKey")
        if not isinstance(pem, str) or not pem.strip():
            raise VideoSDKError("GET /public/rsa-public-key: response field 'publicKey' is missing or not text",
                                "bad_response")
        return pem

    def list_items(self, kind: RecordingKind, room_id: str, *, session_id: str | None = None,
                   per_page: int = PER_PAGE) -> Iterator[Any]:
        """Every item VideoSDK lists for the room (and session) of one recording kind, as it answers
        them (validate each with ``videosdk_items.files_of``), page by page in any paging shape.
        Deleting while iterating shifts later pages under the cursor: collect first, then delete.
        Raises VideoSDKError (``bad_response`` for an answer that cannot be paged through)."""
        return (item for page in self.item_pages(kind, room_id, session_id=session_id, per_page=per_page)
                for item in page)

    def item_pages(self, kind: RecordingKind, room_id: str, *, session_id: str | None = None,
                   per_page: int = PER_PAGE) -> Generator[list[Any], None, None]:
        """``list_items`` page by page: a caller may stop (close the generator) after any page."""
        _check_id("room_id", room_id)
        query: dict[str, str | int] = {"roomId": room_id}
        if session_id is not None:
            _check_id("session_id", session_id)
            query["sessionId"] = session_id
        endpoints = ENDPOINTS[kind]
        # the merge list says "recordings"; "data" is accepted there too, in case it follows the others
        fields = tuple(dict.fromkeys((endpoints.items_field, "data")))
        return self.pages(endpoints.list, query, items_fields=fields, per_page=per_page)

    def room_pages(self, *, per_page: int = PER_PAGE) -> Generator[list[Any], None, None]:
        """GET /v2/rooms page by page (``page`` or ``cursor`` paging): the account's rooms, as answered.
        Pages rather than items, so a caller that knows the order can stop after one."""
        return self.pages(ROOMS, {}, per_page=per_page)

    def list_sessions(self, room_id: str, *, per_page: int = PER_PAGE) -> Iterator[Any]:
        """GET /v2/sessions?roomId=: the room's sessions, as answered."""
        _check_id("room_id", room_id)
        return (item for page in self.pages(SESSIONS, {"roomId": room_id}, per_page=per_page) for item in page)

    def pages(self, path: str, query: Mapping[str, str | int], *, items_fields: tuple[str, ...] = ("data",),
              per_page: int = PER_PAGE) -> Generator[list[Any], None, None]:
        """The items of each page of the list at ``path`` (below the API's origin)."""
        if per_page < 1:
            raise ValueError("per_page must be at least 1")

        def fetch(paging: dict[str, str | int]) -> dict[str, Any]:
            return self._json("GET", path, params={**query, **paging}, from_origin=True)

        def generate() -> Generator[list[Any], None, None]:
            try:
                yield from walk(fetch, per_page=per_page, items_fields=items_fields)
            except PagingError as exc:
                raise VideoSDKError(f"GET {path}: {exc}", "bad_response") from None

        return generate()

    def get_item(self, kind: RecordingKind, resource_id: str) -> dict[str, Any]:
        """One recording resource of any kind by its id (GET <fetch path>/{id}), as VideoSDK answers it."""
        return self._json("GET", f"{ENDPOINTS[kind].fetch}/{_segment('id', resource_id)}", from_origin=True)

    def delete_item(self, kind: RecordingKind, resource_id: str) -> None:
        """DELETE <delete path>/{id}. A room recording's delete is a soft delete on VideoSDK's side.
        ValueError for a kind without a documented delete (merge, transcoding, transcript)."""
        path = ENDPOINTS[kind].delete
        if path is None:
            raise ValueError(f"VideoSDK documents no delete for {kind} recordings")
        self._send("DELETE", f"{path}/{_segment('id', resource_id)}", from_origin=True)

    def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``body`` as JSON to ``path`` (below the API's origin, e.g. "/v2/recordings/start") and
        return the answer's JSON object ({} for an empty answer). Not idempotent: only 429 is retried
        (as VideoSDK's server SDK does), so a start that timed out is never sent twice by us."""
        response = self._send("POST", path, json_body=dict(body), from_origin=True, idempotent=False)
        if not response.content.strip():
            return {}
        try:
            answer = response.json()
        except ValueError:
            raise VideoSDKError(f"POST {path}: response body is not JSON", "bad_response") from None
        return answer if isinstance(answer, dict) else {"data": answer}

    @property
    def origin(self) -> str:
        """The API's origin: api_base without its "/v2" (transcripts live under /ai/v1, not /v2)."""
        return self.api_base[: -len("/v2")] if self.api_base.endswith("/v2") else self.api_base

    def _json(self, method: str, path: str, *, params: Mapping[str, str | int] | None = None,
              auth: bool = True, from_origin: bool = False) -> dict[str, Any]:
        response = self._send(method, path, params=params, auth=auth, from_origin=from_origin)
        try:
            body = response.json()
        except ValueError:  # JSONDecodeError and UnicodeDecodeError; their text would quote the body
            raise VideoSDKError(f"{method} {path}: response body is not JSON", "bad_response") from None
        if not isinstance(body, dict):
            raise VideoSDKError(f"{method} {path}: response body is not a JSON object", "bad_response")
        return body

    def _send(self, method: str, path: str, *, params: Mapping[str, str | int] | None = None,
              auth: bool = True, from_origin: bool = False, json_body: dict[str, Any] | None = None,
              idempotent: bool = True) -> httpx.Response:
        base = self.origin if from_origin else self.api_base
        where = f"{method} {path}"

        def told(error: BaseException, attempt: int, delay: float) -> None:
            log.info("%s: %s; attempt %d of %d, retrying in %.2f s", where, getattr(error, "code", "-"), attempt,
                     self.max_attempts, delay)

        def again(error: BaseException) -> bool:
            # A non-idempotent call (a start) may have taken effect before a 5xx or a dropped connection:
            # only a 429 (refused, not done) is sent again.
            return (isinstance(error, VideoSDKError) and error.retryable
                    and (idempotent or error.code == "rate_limited"))

        attempts = retrying(Backoff(self.backoff, MAX_DELAY), attempts=self.max_attempts, sleep=self._sleep,
                            retry_if=again,
                            wait_hint=lambda e: getattr(e, "retry_after", None), before_sleep=told)
        try:
            for attempt in attempts:
                with attempt:
                    return self._send_once(method, base + path, where, params, auth, json_body, idempotent)
        except VideoSDKError as error:
            tries = attempts.statistics.get("attempt_number", 1)
            if not again(error) and error.retryable:
                error.args = (f"{error} (not retried: the call may have taken effect; check before repeating)",)
            elif error.retryable and self.max_attempts > 1:
                error.args = (f"{error} (gave up after {tries} attempts)",)
            raise error from None
        raise AssertionError("unreachable")

    def _send_once(self, method: str, url: str, where: str, params: Mapping[str, str | int] | None,
                   auth: bool, json_body: dict[str, Any] | None = None, idempotent: bool = True) -> httpx.Response:
        """One request; a failure raises VideoSDKError (``retry_after``: the server's Retry-After, or None)."""
        headers = {"Authorization": self.token()} if auth else {}
        retry_after: float | None = None
        error: VideoSDKError | None
        try:
            response = self._http.request(method, url, params=params, headers=headers, json=json_body,
                                          timeout=self._timeout)
        except httpx.TimeoutException as exc:
            error = VideoSDKError(f"{where}: timed out ({type(exc).__name__})", "timeout", retryable=True)
        except httpx.TransportError as exc:
            # `from None` everywhere: httpx exceptions hold the request, Authorization header included
            error = VideoSDKError(f"{where}: connection failed: {str(exc) or type(exc).__name__}",
                                  "connection", retryable=True)
        else:
            error = _status_error(response, where)
            if error is None:
                return response
            retry_after = _retry_after(response)
            if not idempotent and (said := _message_of(response)):
                error.args = (f"{error}: {said}",)  # why a start was refused ("room not active", ...)
        assert error is not None  # every branch that gets here has one
        error.retry_after = retry_after
        raise error from None


def _status_error(response: httpx.Response, where: str) -> VideoSDKError | None:
    status = response.status_code
    if 200 <= status < 300:
        return None
    if status in (401, 403):
        return VideoSDKAuthError(f"{where}: HTTP {status} from VideoSDK; check api_key and VIDEOSDK_SECRET_KEY",
                                 "unauthorized" if status == 401 else "forbidden")
    if status == 404:
        return VideoSDKError(f"{where}: HTTP 404", "not_found")
    if status == 429:
        return VideoSDKError(f"{where}: HTTP 429", "rate_limited", retryable=True)
    return VideoSDKError(f"{where}: HTTP {status}", "http_status", retryable=status >= 500)


def _message_of(response: httpx.Response) -> str | None:
    """VideoSDK's own explanation of a refusal (its JSON ``message`` or ``error``), cut to 200 characters."""
    try:
        body = response.json()
    except ValueError:
        return None
    said = body.get("message") or body.get("error") if isinstance(body, dict) else None
    return " ".join(said.split())[:200] if isinstance(said, str) and said.strip() else None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP-date: rare enough that our own backoff is a fine substitute
    if seconds is None or seconds != seconds or seconds < 0:  # absent, NaN or negative
        return None
    return min(seconds, MAX_DELAY)


def _check_id(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")


def _segment(name: str, value: str) -> str:
    _check_id(name, value)
    if value in (".", ".."):
        # dot segments are resolved away by URL normalisation: DELETE /recordings/.. would hit /v2
        raise ValueError(f"{name} must not be {value!r}")
    return quote(value, safe="")


