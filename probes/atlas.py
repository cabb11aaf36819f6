"""The RIPE Atlas API boundary: every Atlas call goes through ripe.atlas.cousteau here.

This is the only module that imports cousteau or requests for Atlas. It

* points cousteau at any server speaking the Atlas API (``server="HOST[:PORT]"``; cousteau
  always builds ``https://`` URLs) and makes requests trust a CA bundle (``verify``);
* adds what cousteau lacks, through one narrow subclass of each request class: an
  overall deadline per request (connect + every read + the whole body, ``Settings.deadline``)
  and a body-size cap (``Settings.max_body_bytes``) — the body is streamed and cut off at
  either limit — and access to the HTTP response (status, ``Retry-After``) or the requests
  exception;
* retries idempotent calls on 429 / 5xx / connection errors / truncated bodies, with
  exponential backoff and full jitter, honouring ``Retry-After`` up to
  ``Settings.max_retry_after`` (a longer wait ends the call with a message saying when to
  retry; a wait of :data:`LOUD_WAIT` seconds or more is logged as a warning first);
* checks the type of every field pathexp reads from an answer (ids, status, times,
  balance): a wrong type is one :class:`probes.errors.AtlasAPIError` line naming the call
  and the field;
* translates every failure into :mod:`probes.errors` with ``raise ... from exc``.

A create request is not retried blindly: when its outcome is unknown (connection lost,
5xx) :class:`CreateOutcomeUnknown` is raised and the caller looks for the measurement by
its tag before creating again (see :mod:`probes.campaign`).

The API key never appears in messages, reprs or logs: it lives in a
:class:`probes.config.ApiKey`, and every server-supplied text is scrubbed of it — of any
echo of 8 or more consecutive characters of it, in any case, with or without its hyphens
(:func:`scrub_secret`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

import requests
from ripe.atlas.cousteau import (
    AtlasCreateRequest,
    AtlasRequest,
    AtlasResultsRequest,
    AtlasSource,
    AtlasStopRequest,
    Traceroute,
)

from probes._backoff import Backoff, parse_retry_after
from probes.bounded_http import BodyLimit, name_unresolved, read_body
from probes.config import ApiKey, Settings
from probes.errors import (
    AtlasAPIError,
    AuthenticationError,
    ConfigError,
    InsufficientCredits,
    NetworkUnavailable,
)

__all__ = [
    "AtlasClient",
    "CreateOutcomeUnknown",
    "LOUD_WAIT",
    "RetryStats",
    "STATUS_FINAL",
    "scrub_secret",
]

log = logging.getLogger(__name__)

#: Measurement status ids after which no new results appear
#: (4 Stopped, 5 Forced to stop, 6 No suitable probes, 7 Failed, 8 Archived).
STATUS_FINAL = frozenset({4, 5, 6, 7, 8})

#: Retry waits at least this long (seconds) are logged as a warning before they start.
LOUD_WAIT = 5.0

#: Shortest run of a secret's characters that :func:`scrub_secret` masks.
SCRUB_MIN = 8

_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
_USER_AGENT = "pathexp (ripe.atlas.cousteau)"


class CreateOutcomeUnknown(AtlasAPIError):
    """A create request failed in a way that leaves unknown whether Atlas created it."""


class _Transient(Exception):
    """Internal: a retryable failure (the last one is re-raised as AtlasAPIError)."""

    def __init__(self, message: str, *, status: int | None, retry_after: float | None,
                 cause: BaseException | None, sent: bool) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.cause = cause
        self.sent = sent


def scrub_secret(text: str, secret: str, *, mask: str = "***") -> str:
    """``text`` with every echo of ``secret`` masked.

    An echo is any run of :data:`SCRUB_MIN` or more consecutive characters of the secret's
    letters and digits, compared case-insensitively and ignoring separators (``-``, ``_``,
    spaces, ``%2D``...) between them: a server may echo a key upper-cased, truncated, or
    without the hyphens of its UUID form.

    >>> key = "6f1d2c9e-8b7a-4c3d-9e0f-123456789abc"
    >>> scrub_secret("bad key 6F1D2C9E-8B7A-4C3D", key)
    'bad key ***'
    >>> scrub_secret("key ...4c3d9e0f123 rejected; id 6f1d2c9", key)
    'key ...*** rejected; id 6f1d2c9'
    """
    norm = "".join(c for c in secret.lower() if c.isalnum())
    if len(norm) < SCRUB_MIN:
        return text.replace(secret, mask) if secret else text
    grams = {norm[i:i + SCRUB_MIN] for i in range(len(norm) - SCRUB_MIN + 1)}
    pos = [i for i, c in enumerate(text) if c.isalnum()]
    letters = "".join(text[i].lower() for i in pos)
    hit = [False] * len(pos)
    for i in range(len(letters) - SCRUB_MIN + 1):
        if letters[i:i + SCRUB_MIN] in grams:
            for j in range(i, i + SCRUB_MIN):
                hit[j] = True
    if not any(hit):
        return text
    out: list[str] = []
    last = 0
    k = 0
    while k < len(pos):
        if not hit[k]:
            k += 1
            continue
        j = k
        while j + 1 < len(pos) and hit[j + 1]:
            j += 1
        out.append(text[last:pos[k]])
        out.append(mask)
        last = pos[j] + 1
        k = j + 1
    out.append(text[last:])
    return "".join(out)


class _Capture:
    """Mixin for cousteau request classes: deadline, size cap, keep the response or exception."""

    _px_timeout: float = 30.0
    _px_deadline: float = 300.0
    _px_max_bytes: int = 512 * 1024 * 1024
    _px_response: requests.Response | None = None
    _px_exc: requests.RequestException | None = None

    def get_http_method(self, method: str) -> requests.Response:  # cousteau hook
        started = time.monotonic()
        per_read = min(self._px_timeout, self._px_deadline)
        args = self.http_method_args  # type: ignore[attr-defined]
        args["timeout"] = (per_read, per_read)
        args["stream"] = True
        try:
            resp = super().get_http_method(method)  # type: ignore[misc]
            read_body(resp, started=started, deadline=self._px_deadline,
                      timeout=per_read, max_bytes=self._px_max_bytes)
        except requests.RequestException as exc:
            self._px_exc = exc
            raise
        self._px_response = resp
        return resp


class _Get(_Capture, AtlasRequest):
    pass


class _Create(_Capture, AtlasCreateRequest):
    pass


class _Stop(_Capture, AtlasStopRequest):
    pass


class _Results(_Capture, AtlasResultsRequest):
    pass


@dataclass
class RetryStats:
    """Counts of what the client went through (kept with fetch reports)."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    server_errors: int = 0
    connection_errors: int = 0
    bad_bodies: int = 0
    repeated_pages: int = 0
    slept: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def _utc(ts: int | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(int(ts), tz=timezone.utc)


class AtlasClient:
    """A client for one Atlas API server, built on cousteau.

    Parameters
    ----------
    settings
        Server, key, CA bundle, timeout and retry settings (:class:`probes.config.Settings`).
    sleep, rng
        Injected for unit tests of the backoff (defaults: ``time.sleep``, a fresh RNG).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._server = settings.server
        self._key: ApiKey | None = settings.key
        self._verify: bool | str = (
            str(Path(settings.ca_bundle)) if settings.ca_bundle is not None else True
        )
        self._timeout = settings.timeout
        self._deadline = settings.deadline
        self._max_bytes = settings.max_body_bytes
        self._attempts = max(1, settings.max_attempts)
        self._max_retry_after = settings.max_retry_after
        self._backoff = Backoff(base=settings.backoff_base, cap=settings.backoff_cap)
        self._page_size = settings.limits.page_size
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.stats = RetryStats()

    def __repr__(self) -> str:
        key = "set" if self._key is not None else "none"
        return f"AtlasClient(server={self._server!r}, key={key})"

    @property
    def server(self) -> str:
        return self._server

    @property
    def has_key(self) -> bool:
        return self._key is not None

    # ------------------------------------------------------------------ plumbing
    def _scrub(self, text: object) -> str:
        s = str(text)
        if self._key is not None:
            s = scrub_secret(s, self._key.reveal())
        return s[:500].replace("\n", " ").replace("\r", " ")

    def _kind(self, v: Any) -> str:
        if v is None:
            return "null"
        if isinstance(v, bool):
            return f"a boolean ({v})"
        if isinstance(v, str):
            return f"a string {self._scrub(v[:40])!r}"
        if isinstance(v, (int, float)):
            return f"a number ({v})"
        return "a list" if isinstance(v, list) else "an object" if isinstance(v, dict) \
            else type(v).__name__

    def _int_field(self, obj: dict, name: str, what: str, *, optional: bool = False,
                   label: str | None = None) -> int | None:
        """``obj[name]`` checked to be an integer (or null when ``optional``)."""
        v = obj.get(name)
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise AtlasAPIError(
                f"{what}: field {label or name!r} is {self._kind(v)}, expected an integer"
                + (" or null" if optional else ""))
        return v

    def _check_measurement(self, m: Any, what: str) -> dict:
        """A measurement object whose fields pathexp reads have the documented types."""
        if not isinstance(m, dict):
            raise AtlasAPIError(f"{what}: a measurement is {self._kind(m)}, expected an object")
        mid = self._int_field(m, "id", what)
        where = f"{what} (measurement {mid})" if "measurement" not in what else what
        st = m.get("status")
        if not isinstance(st, dict):
            raise AtlasAPIError(f"{where}: field 'status' is {self._kind(st)}, expected an "
                                "object with an integer 'id'")
        self._int_field(st, "id", where, label="status.id")
        self._int_field(st, "when", where, optional=True, label="status.when")
        if st.get("name") is not None and not isinstance(st["name"], str):
            raise AtlasAPIError(f"{where}: field 'status.name' is {self._kind(st['name'])}, "
                                "expected a string")
        for name in ("start_time", "stop_time", "credits_per_result", "interval"):
            self._int_field(m, name, where, optional=True)
        tags = m.get("tags")
        if tags is not None and not (isinstance(tags, list)
                                     and all(isinstance(t, str) for t in tags)):
            raise AtlasAPIError(f"{where}: field 'tags' is {self._kind(tags)}, expected a "
                                "list of strings")
        return m

    def _kwargs(self, *, auth: bool) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "server": self._server,
            "verify": self._verify,
            "user_agent": _USER_AGENT,
        }
        if auth and self._key is not None:
            kw["key"] = self._key.reveal()
        return kw

    def _detail(self, body: Any) -> str:
        if isinstance(body, dict):
            err = body.get("error", body)
            if isinstance(err, dict):
                parts = [str(err.get(k)) for k in ("title", "detail") if err.get(k)]
                for e in err.get("errors") or []:
                    if isinstance(e, dict) and e.get("detail"):
                        ptr = (e.get("source") or {}).get("pointer", "")
                        parts.append(f"{ptr} {e['detail']}".strip())
                if parts:
                    return self._scrub("; ".join(parts))
            return self._scrub(err)
        return self._scrub(body)[:200]

    def _outcome(self, req: _Capture, ok: bool, body: Any, what: str, *,
                 allow_empty: bool = False) -> Any:
        """Turn cousteau's ``(is_success, body)`` into a value, _Transient or our error."""
        exc = req._px_exc
        resp = req._px_response
        if exc is not None:
            if isinstance(exc, requests.exceptions.SSLError):
                raise AtlasAPIError(
                    f"TLS verification failed talking to {self._server} ({what}); "
                    "pass --ca-bundle for a private CA"
                ) from exc
            if isinstance(exc, BodyLimit) and exc.too_big:
                raise AtlasAPIError(f"{what}: {exc}") from exc
            if name_unresolved(exc):  # nothing was sent; retrying in seconds does not help
                raise NetworkUnavailable(
                    f"{what}: the name of {self._server} does not resolve (no DNS answer); offline? "
                    "Check the network or DNS, set HTTPS_PROXY if you need a proxy, or point the "
                    "Atlas server setting at a reachable API"
                ) from exc
            sent = not isinstance(exc, requests.exceptions.ConnectTimeout)
            self.stats.connection_errors += 1
            raise _Transient(
                f"{what}: {type(exc).__name__}: {self._scrub(exc)}",
                status=None, retry_after=None, cause=exc, sent=sent,
            )
        if resp is None:  # pragma: no cover - cousteau always sets one or the other
            raise AtlasAPIError(f"{what}: no response from {self._server}")
        status = resp.status_code
        if ok:
            if allow_empty and body == "":
                return None
            if isinstance(body, str):  # cousteau hands back text when JSON decoding fails
                self.stats.bad_bodies += 1
                raise _Transient(
                    f"{what}: HTTP {status} with a body that is not valid JSON "
                    f"({len(resp.content)} bytes)",
                    status=status, retry_after=None, cause=None, sent=True,
                )
            return body
        if status in _TRANSIENT_STATUS:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            if status == 429:
                self.stats.throttled += 1
            else:
                self.stats.server_errors += 1
            raise _Transient(
                f"{what}: HTTP {status} {self._detail(body)}",
                status=status, retry_after=retry_after, cause=None, sent=status != 429,
            )
        detail = self._detail(body)
        if status in (401, 403):
            raise AuthenticationError(
                f"Atlas API at {self._server} refused the request ({what}, HTTP {status}): "
                f"{detail}. Check RIPE_ATLAS_KEY and the key's permissions.",
                status=status,
            )
        if "credit" in detail.lower() and status in (400, 402):
            raise InsufficientCredits(
                f"Atlas API at {self._server} rejected {what}: {detail}"
            )
        raise AtlasAPIError(f"{what}: HTTP {status}: {detail}", status=status)

    def _call(self, make: Callable[[], tuple[_Capture, Callable[[], tuple[bool, Any]]]],
              what: str, *, idempotent: bool = True, allow_empty: bool = False) -> Any:
        last: _Transient | None = None
        for attempt in range(self._attempts):
            req, send = make()
            req._px_timeout = self._timeout
            req._px_deadline = self._deadline
            req._px_max_bytes = self._max_bytes
            self.stats.requests += 1
            t0 = time.monotonic()
            ok, body = send()
            log.debug("%s -> %s in %.0f ms", what,
                      getattr(req._px_response, "status_code", "error"),
                      1000 * (time.monotonic() - t0))
            try:
                return self._outcome(req, ok, body, what, allow_empty=allow_empty)
            except _Transient as tr:
                last = tr
                if not idempotent and tr.sent:
                    raise CreateOutcomeUnknown(
                        f"{tr} (the measurement may or may not exist)", status=tr.status
                    ) from tr.cause
                if tr.retry_after is not None and tr.retry_after > self._max_retry_after:
                    when = datetime.now(timezone.utc).timestamp() + tr.retry_after
                    raise AtlasAPIError(
                        f"{what}: the Atlas API asks to wait {tr.retry_after:.0f} s "
                        f"(HTTP {tr.status}, Retry-After), longer than atlas.max_retry_after = "
                        f"{self._max_retry_after:g} s; retry after "
                        f"{datetime.fromtimestamp(when, tz=timezone.utc):%Y-%m-%d %H:%M:%S} UTC",
                        status=tr.status) from tr.cause
                if attempt + 1 < self._attempts:
                    delay = self._backoff.delay(attempt, retry_after=tr.retry_after,
                                                rng=self._rng)
                    self.stats.retries += 1
                    self.stats.slept += delay
                    if delay >= LOUD_WAIT:
                        log.warning("%s; waiting %.0f s before retrying", tr, delay)
                    else:
                        log.info("%s; retrying in %.1f s", tr, delay)
                    self._sleep(delay)
        assert last is not None
        raise AtlasAPIError(
            f"{last} (gave up after {attempt + 1} attempts)",
            status=last.status,
        ) from last.cause

    def _get(self, path: str, params: dict[str, Any] | None = None, *, auth: bool = True,
             what: str | None = None) -> Any:
        def make() -> tuple[_Capture, Callable[[], tuple[bool, Any]]]:
            req = _Get(url_path=path, **self._kwargs(auth=auth))
            return req, lambda: req.get(**(params or {}))

        return self._call(make, what or f"GET {path}")

    def _paginate(self, path: str, params: dict[str, Any], *, auth: bool,
                  what: str) -> list[dict]:
        """All objects of a paginated listing, deduplicated by ``id``; stops on a page loop."""
        params = {**params, "page_size": self._page_size}
        url = f"{path}?{urlencode(params)}"
        seen_urls: set[str] = set()
        seen_ids: set[Any] = set()
        out: list[dict] = []
        repeats = 0
        while url:
            body = self._get(url, auth=auth, what=what)
            if not isinstance(body, dict) or not isinstance(body.get("results"), list):
                raise AtlasAPIError(f"{what}: unexpected response shape (no 'results' list)")
            fresh = 0
            for obj in body["results"]:
                if not isinstance(obj, dict):
                    raise AtlasAPIError(f"{what}: a listed object is {self._kind(obj)}, "
                                        "expected an object")
                oid = self._int_field(obj, "id", what)
                if oid in seen_ids:
                    continue
                seen_ids.add(oid)
                out.append(obj)
                fresh += 1
            if body["results"] and not fresh:
                # a page we already had: ask for this one again rather than skip ahead
                self.stats.repeated_pages += 1
                repeats += 1
                if repeats > 3:
                    raise AtlasAPIError(f"{what}: the server keeps repeating page {url}")
                continue
            repeats = 0
            seen_urls.add(url)
            nxt = body.get("next")
            if not nxt:
                break
            parsed = urlparse(nxt)
            url = f"{parsed.path}?{parsed.query}" if parsed.query else parsed.path
            if url in seen_urls:  # a cycle in the links
                self.stats.repeated_pages += 1
                break
        return out

    # ------------------------------------------------------------------ API
    def probes(self, **filters: Any) -> list[dict]:
        """Probe objects (API v2) matching ``filters`` (e.g. ``country_code="DE"``)."""
        return self._paginate("/api/v2/probes/", filters, auth=False, what="list probes")

    def probes_by_id(self, ids: Iterable[int]) -> list[dict]:
        """Probe objects for the given ids (chunked ``id__in``)."""
        ids = sorted(set(int(i) for i in ids))
        out: list[dict] = []
        for i in range(0, len(ids), 500):
            chunk = ",".join(str(x) for x in ids[i:i + 500])
            out.extend(self._paginate("/api/v2/probes/", {"id__in": chunk}, auth=False,
                                      what="list probes by id"))
        return out

    def anchors(self, **filters: Any) -> list[dict]:
        """Anchor objects (API v2) matching ``filters`` (e.g. ``country="US"``)."""
        return self._paginate("/api/v2/anchors/", filters, auth=False, what="list anchors")

    def measurements(self, **filters: Any) -> list[dict]:
        """Measurement objects matching ``filters`` (e.g. ``tags="pathexp-abc"``)."""
        what = "list measurements"
        return [self._check_measurement(m, what)
                for m in self._paginate("/api/v2/measurements/", filters, auth=True,
                                        what=what)]

    def measurement(self, msm_id: int) -> dict:
        """One measurement object (needs no key for public measurements)."""
        what = f"get measurement {int(msm_id)}"
        body = self._check_measurement(self._get(f"/api/v2/measurements/{int(msm_id)}/",
                                                 what=what), what)
        if body["id"] != int(msm_id):
            raise AtlasAPIError(f"{what}: the answer is measurement {body['id']}")
        return body

    def credits(self) -> dict:
        """The account's credit information (``current_balance`` etc.); needs a key."""
        if self._key is None:
            raise AuthenticationError("reading the credit balance needs an API key "
                                      "(RIPE_ATLAS_KEY)")
        body = self._get("/api/v2/credits/", what="get credits")
        if not isinstance(body, dict):
            raise AtlasAPIError(f"get credits: the answer is {self._kind(body)}, expected an "
                                "object")
        self._int_field(body, "current_balance", "get credits")
        return body

    def results(self, msm_id: int, *, start: int | None = None, stop: int | None = None,
                probe_ids: Sequence[int] | None = None) -> list[dict]:
        """Results of a measurement with ``start <= timestamp <= stop`` (seconds)."""
        what = f"results of {int(msm_id)} [{start}, {stop}]"

        def make() -> tuple[_Capture, Callable[[], tuple[bool, Any]]]:
            req = _Results(msm_id=int(msm_id), start=_utc(start), stop=_utc(stop),
                           probe_ids=list(probe_ids) if probe_ids else None,
                           **self._kwargs(auth=True))
            req.http_method_args["params"]["format"] = "json"
            return req, req.create

        body = self._call(make, what)
        if not isinstance(body, list):
            raise AtlasAPIError(f"{what}: expected a JSON array of results")
        return body

    def create_traceroutes(
        self,
        definitions: Sequence[dict[str, Any]],
        *,
        probe_ids: Sequence[int],
        is_oneoff: bool,
        start_time: int | None = None,
        stop_time: int | None = None,
    ) -> list[int]:
        """Create traceroute measurements sharing one probe set; returns their ids in order.

        Raises :class:`CreateOutcomeUnknown` when the request may have been applied.
        """
        if self._key is None:
            raise AuthenticationError("creating measurements needs an API key (RIPE_ATLAS_KEY)")
        if not probe_ids:
            raise ConfigError("create: no probes given")

        def make() -> tuple[_Capture, Callable[[], tuple[bool, Any]]]:
            msms = [Traceroute(**d) for d in definitions]
            src = AtlasSource(type="probes", value=",".join(str(p) for p in probe_ids),
                              requested=len(probe_ids))
            req = _Create(measurements=msms, sources=[src], is_oneoff=is_oneoff,
                          start_time=_utc(start_time), stop_time=_utc(stop_time),
                          **self._kwargs(auth=True))
            return req, req.create

        body = self._call(make, f"create {len(definitions)} measurement(s)", idempotent=False)
        ids = body.get("measurements") if isinstance(body, dict) else None
        if (not isinstance(ids, list) or len(ids) != len(definitions)
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)):
            raise CreateOutcomeUnknown(
                f"create: unexpected answer (field 'measurements' is {self._kind(ids)}, "
                f"expected {len(definitions)} integer ids)")
        return list(ids)

    def stop_measurement(self, msm_id: int) -> None:
        """Stop a measurement (DELETE); stopping a stopped one is not an error."""

        def make() -> tuple[_Capture, Callable[[], tuple[bool, Any]]]:
            req = _Stop(msm_id=int(msm_id), **self._kwargs(auth=True))
            return req, req.create

        self._call(make, f"stop measurement {int(msm_id)}", allow_empty=True)
