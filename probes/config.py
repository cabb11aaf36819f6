"""Settings for the Atlas backend: defaults in one frozen dataclass, merged explicitly.

Nothing is read at import time. The CLI calls :func:`load_settings` once at its entry
point and passes the resulting :class:`Settings` down; library code takes a ``Settings``
argument and never looks at the environment itself.

Sources, lowest precedence first:

1. the defaults below (:class:`Settings`, :class:`CreditRates`, :class:`AtlasLimits`);
2. an optional TOML file (``--config FILE``, else ``<user config dir>/pathexp/config.toml``)
   with tables ``[atlas]``, ``[credits]`` and ``[limits]``;
3. the environment: ``PATHEXP_ATLAS_SERVER`` (server) and ``RIPE_ATLAS_KEY`` (API key);
4. explicit overrides (command-line options).

The API key comes only from ``RIPE_ATLAS_KEY`` or from the ``key`` entry of ``[atlas]`` in
a settings file whose mode is ``0600`` (no group/other bits). It is held in an
:class:`ApiKey`, whose ``repr``/``str`` never show it.

Credit cost of a traceroute result (:class:`CreditRates`): RIPE Atlas documents the cost of
one traceroute result as 10 credits per packet and per started 1500 bytes of packet size,
doubled for one-off measurements. A default one-off traceroute (3 packets, 48 bytes) thus
costs 60 credits per result, the ``credits_per_result`` the API reports for it. Where the API
states ``credits_per_result`` for a created measurement, that figure is used instead.
"""

from __future__ import annotations

import math
import os
import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from probes.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "analyze_defaults",
    "ApiKey",
    "AtlasLimits",
    "CreditRates",
    "Settings",
    "load_settings",
    "parse_server",
    "default_config_path",
    "ENV_KEY",
    "ENV_SERVER",
]

#: Environment variable holding the RIPE Atlas API key.
ENV_KEY = "RIPE_ATLAS_KEY"
#: Environment variable naming the Atlas API server (``HOST[:PORT]``).
ENV_SERVER = "PATHEXP_ATLAS_SERVER"

_SERVER = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?")


class ApiKey:
    """A RIPE Atlas API key that does not show itself.

    ``repr``, ``str`` and formatting print ``ApiKey(***)``; only :meth:`reveal` returns the
    secret, and only :mod:`probes.atlas` calls it.

    >>> k = ApiKey("0123-secret")
    >>> k, str(k), f"{k}"
    (ApiKey(***), 'ApiKey(***)', 'ApiKey(***)')
    >>> k.reveal()
    '0123-secret'
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        value = value.strip()
        if not value:
            raise ConfigError("the RIPE Atlas API key is empty")
        if any(c.isspace() for c in value):
            raise ConfigError("the RIPE Atlas API key contains whitespace")
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the Authorization header."""
        return self._value

    def __repr__(self) -> str:
        return "ApiKey(***)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("ApiKey", self._value))

    def __reduce__(self) -> Any:
        raise TypeError("ApiKey cannot be pickled")


@dataclass(frozen=True)
class CreditRates:
    """Credits charged per traceroute result (see the module docstring).

    >>> CreditRates().traceroute_credits_per_result(packets=3, size=48, oneoff=True)
    60
    >>> CreditRates().traceroute_credits_per_result(packets=3, size=48, oneoff=False)
    30
    >>> CreditRates().traceroute_credits_per_result(packets=2, size=2000, oneoff=True)
    80
    """

    traceroute_per_packet: int = 10
    size_step: int = 1500
    oneoff_multiplier: int = 2

    def traceroute_credits_per_result(self, *, packets: int, size: int, oneoff: bool) -> int:
        steps = max(1, math.ceil(size / self.size_step))
        base = self.traceroute_per_packet * packets * steps
        return base * (self.oneoff_multiplier if oneoff else 1)


@dataclass(frozen=True)
class AtlasLimits:
    """Atlas limits the planner and the submitter stay within.

    ``max_probes_per_measurement``: probes one measurement may request (Atlas: 1000).
    ``max_definitions_per_request``: measurement definitions sent in one create request.
    ``max_results_per_day``: results the account may schedule per day (planner warns).
    ``page_size``: objects per page when listing probes, anchors and measurements.
    ``fetch_window``: longest start..stop window of one results request, seconds.
    ``fetch_overlap``: how far back (s) each fetch of a running measurement re-reads, for
    results that reach Atlas late (ingest drops the duplicates).
    ``ingest_batch``: results handed to the store at once (cursors move after each batch).
    """

    max_probes_per_measurement: int = 1000
    max_definitions_per_request: int = 10
    max_results_per_day: int = 1_000_000
    page_size: int = 500
    fetch_window: int = 86_400
    fetch_overlap: int = 3_600
    ingest_batch: int = 10_000


@dataclass(frozen=True)
class Settings:
    """Everything the Atlas backend needs besides the campaign spec.

    Time limits of one API request (``[atlas]`` in the settings file):

    ``timeout``: longest wait for the connection and for each read, seconds (default 30).
    ``deadline``: wall-clock cap of one request, from connect to the last body byte
    (default 300 s); a server that drips or never ends its answer is cut off there.
    ``max_body_bytes``: largest answer read (default 512 MiB); a longer body is refused.
    ``max_attempts``, ``backoff_base``, ``backoff_cap``: retries of idempotent calls.
    ``max_retry_after``: longest ``Retry-After`` wait honoured (default 120 s); a longer
    one ends the call with a message saying when to retry. Waits of 5 s or more are logged
    (warning) before they start.

    Credits (see :mod:`probes.campaign.run`):

    ``resolve_window``: how long (seconds of backoff, default 120) a create whose outcome
    is unknown is looked for by its tag before the run stops; its credits stay reserved.
    ``empty_final_grace``: a stopped measurement whose final result window reads empty is
    finished only once it has been stopped this long (default one day).
    """

    server: str = "atlas.ripe.net"
    ca_bundle: Path | None = None
    key: ApiKey | None = field(default=None, repr=False)
    timeout: float = 30.0
    deadline: float = 300.0
    max_body_bytes: int = 512 * 1024 * 1024
    max_attempts: int = 6
    backoff_base: float = 0.5
    backoff_cap: float = 60.0
    max_retry_after: float = 120.0
    resolve_window: float = 120.0
    empty_final_grace: float = 86_400.0
    fetch_workers: int = 4
    rates: CreditRates = field(default_factory=CreditRates)
    limits: AtlasLimits = field(default_factory=AtlasLimits)

    def __repr__(self) -> str:
        key = "set" if self.key is not None else "none"
        return (
            f"Settings(server={self.server!r}, ca_bundle={self.ca_bundle!r}, key={key}, "
            f"timeout={self.timeout}, rates={self.rates!r}, limits={self.limits!r})"
        )


def parse_server(value: str) -> str:
    """Validate ``HOST[:PORT]`` (no scheme, no path) and return it.

    >>> parse_server("127.0.0.1:8443")
    '127.0.0.1:8443'
    >>> parse_server("https://atlas.ripe.net")
    Traceback (most recent call last):
    ...
    probes.errors.ConfigError: invalid Atlas server 'https://atlas.ripe.net': expected HOST[:PORT] without scheme or path
    """
    value = value.strip()
    m = _SERVER.fullmatch(value)
    if not m or (m.group(1) and not 0 < int(m.group(1)) < 65536):
        raise ConfigError(
            f"invalid Atlas server {value!r}: expected HOST[:PORT] without scheme or path"
        )
    return value


def default_config_path() -> Path:
    """``<user config dir>/pathexp/config.toml`` (platformdirs)."""
    import platformdirs

    return Path(platformdirs.user_config_dir("pathexp")) / "config.toml"


_SECTIONS: dict[str, type] = {"atlas": Settings, "credits": CreditRates, "limits": AtlasLimits}
_ATLAS_SCALARS: dict[str, type | tuple[type, ...]] = {
    "server": str,
    "ca_bundle": str,
    "key": str,
    "timeout": (int, float),
    "max_attempts": int,
    "backoff_base": (int, float),
    "backoff_cap": (int, float),
    "max_retry_after": (int, float),
    "deadline": (int, float),
    "max_body_bytes": int,
    "resolve_window": (int, float),
    "empty_final_grace": (int, float),
    "fetch_workers": int,
}


def _line_of(text: str, section: str, key: str) -> int | None:
    current = None
    for no, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s.startswith("["):
            current = s.strip("[] ")
        elif current == section and re.match(rf"{re.escape(key)}\s*=", s):
            return no
    return None


def _read_file(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc.strerror}") from exc
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


#: Sections of the settings file that other modules read.
_OTHER_SECTIONS = frozenset({"local_probe", "analyze"})


def _file_values(path: Path) -> tuple[dict[str, Any], ApiKey | None]:
    data, text = _read_file(path)
    out: dict[str, Any] = {}
    key: ApiKey | None = None
    for section, body in data.items():
        if section in _OTHER_SECTIONS and isinstance(body, dict):
            continue  # read by its own loader (probes.local.load_local_probe)
        if section not in _SECTIONS or not isinstance(body, dict):
            raise ConfigError(
                f"{path}: unknown section [{section}] (expected one of {sorted(_SECTIONS)})"
            )
        cls = _SECTIONS[section]
        names = {f.name for f in fields(cls)} - {"rates", "limits"}
        sub: dict[str, Any] = {}
        for name, value in body.items():
            where = f"{path}:{_line_of(text, section, name) or '?'}"
            if name not in names:
                raise ConfigError(f"{where}: unknown setting {section}.{name}")
            if section == "atlas":
                kind = _ATLAS_SCALARS[name]
                if not isinstance(value, kind) or isinstance(value, bool):
                    raise ConfigError(f"{where}: {section}.{name} has the wrong type")
                if name == "key":
                    mode = stat.S_IMODE(path.stat().st_mode)
                    if mode & 0o077:
                        raise ConfigError(
                            f"{path} holds an API key but its mode is {mode:04o}; "
                            f"run: chmod 600 {path}"
                        )
                    key = ApiKey(str(value))
                    continue
                if name == "server":
                    value = parse_server(str(value))
                if name == "ca_bundle":
                    value = Path(str(value)).expanduser()
            elif not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{where}: {section}.{name} must be a positive integer")
            sub[name] = value
        out[section] = sub
    return out, key


def load_settings(
    *,
    path: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    server: str | None = None,
    ca_bundle: Path | str | None = None,
    search_default: bool = True,
) -> Settings:
    """Build :class:`Settings` from defaults, a settings file, the environment and overrides.

    Parameters
    ----------
    path
        Settings file; an explicit path must exist. Without one, the default path
        (:func:`default_config_path`) is used when ``search_default`` and it exists.
    env
        Environment to read ``RIPE_ATLAS_KEY`` / ``PATHEXP_ATLAS_SERVER`` from
        (default: ``os.environ``).
    server, ca_bundle
        Explicit overrides (command-line options), highest precedence.
    """
    env = os.environ if env is None else env
    settings = Settings()
    key: ApiKey | None = None
    file: Path | None = Path(path) if path is not None else None
    if file is None and search_default:
        candidate = default_config_path()
        file = candidate if candidate.is_file() else None
    elif file is not None and not file.is_file():
        raise ConfigError(f"settings file {file} does not exist")
    if file is not None:
        values, key = _file_values(file)
        atlas = values.get("atlas", {})
        settings = replace(
            settings,
            **atlas,
            rates=replace(settings.rates, **values.get("credits", {})),
            limits=replace(settings.limits, **values.get("limits", {})),
        )
    if env.get(ENV_SERVER):
        settings = replace(settings, server=parse_server(env[ENV_SERVER]))
    if env.get(ENV_KEY):
        key = ApiKey(env[ENV_KEY])
    if server is not None:
        settings = replace(settings, server=parse_server(server))
    if ca_bundle is not None:
        settings = replace(settings, ca_bundle=Path(ca_bundle))
    if settings.ca_bundle is not None and not Path(settings.ca_bundle).is_file():
        raise ConfigError(f"CA bundle {settings.ca_bundle} does not exist")
    return replace(settings, key=key)


def analyze_defaults(path: Path | str | None = None) -> dict[str, Any]:
    """``[analyze]`` of the settings file: defaults of ``pathexp analyze`` (``dst_country``).

    ``dst_country`` is a two-letter country code or ``"any"``. A missing file or section gives
    ``{}``.

    Raises
    ------
    probes.errors.ConfigError
        An unreadable file, an unknown key or a bad value, naming the file.
    """
    p = Path(path) if path is not None else default_config_path()
    if not p.is_file():
        if path is not None:
            raise ConfigError(f"{p}: no such settings file")
        return {}
    try:
        body = tomllib.loads(p.read_text(encoding="utf-8")).get("analyze", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read settings: {exc}") from None
    if not isinstance(body, dict):
        raise ConfigError(f"{p}: [analyze] must be a table")
    unknown = sorted(set(body) - {"dst_country"})
    if unknown:
        raise ConfigError(f"{p}: [analyze] unknown key(s) {', '.join(unknown)} (expected dst_country)")
    cc = body.get("dst_country")
    if cc is not None and not (isinstance(cc, str) and (cc.lower() == "any" or re.fullmatch(r"[A-Za-z]{2}", cc))):
        raise ConfigError(f"{p}: [analyze] dst_country must be a two-letter country code or \"any\", got {cc!r}")
    return {} if cc is None else {"dst_country": "any" if cc.lower() == "any" else cc.upper()}
