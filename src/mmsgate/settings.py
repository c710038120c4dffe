"""The one settings object: built once at start from the TOML file and `MMSGATE_*` variables.

Nothing here runs at import time; `load()` is called by the command line and by tests.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from mmsgate.errors import ConfigError
from mmsgate.profiles import PROFILES, CarrierProfile

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

S = TypeVar("S", bound="DataclassInstance")

KIB = 1024


class LogFormat(enum.StrEnum):
    """How log lines are written: `key=value` for people, or one JSON object per line."""

    CONSOLE = "console"
    JSON = "json"


@dataclasses.dataclass(frozen=True, slots=True)
class MediaSettings:
    """How media named by URL is fetched and checked at accept time."""

    strict: bool = False
    allow_private_networks: bool = False
    connect_timeout: float = 5.0
    total_timeout: float = 30.0
    max_redirects: int = 5
    # Fetches in flight per API process: in all, for one account, to one media host. The two
    # shares keep one account's hanging media server from making other accounts' sends wait.
    max_concurrent_fetches: int = 64
    max_fetches_per_account: int = 8
    max_fetches_per_host: int = 8
    image_max_bytes: int = 3000 * KIB
    gif_max_bytes: int = 1024 * KIB
    audio_max_bytes: int = 10000 * KIB
    video_max_bytes: int = 50000 * KIB
    object_max_bytes: int = 2048 * KIB
    text_max_chars: int = 5000


@dataclasses.dataclass(frozen=True, slots=True)
class PostbackSettings:
    """How a worker posts to the customers' postback URLs."""

    timeout: float = 10.0  # seconds for the whole exchange, connecting included
    # POSTs in flight to one host per worker at most (halved at each timeout, back one by
    # one as it answers; never over an eighth of the worker's slots); all postbacks together
    # take at most half of them.
    per_host: int = 16


@dataclasses.dataclass(frozen=True, slots=True)
class ApiSettings:
    """Limits on what one API request may be."""

    max_body_bytes: int = 1024 * KIB
    max_xml_depth: int = 32
    max_recipients: int = 100
    account_cache_seconds: float = 2.0
    # What a connection may take of the server (mmsgate/http_protocol.py): the request head
    # within `read_timeout` seconds, the body without a pause longer than that and whole
    # within `body_timeout`; at most `max_connections_per_client` open connections from one
    # address per process (0: no cap).
    read_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections_per_client: int = 100


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """Where MMS for some operators or number prefixes go (`[[routes]]` in the config)."""

    name: str
    kind: str = "simulator"
    url: str | None = None
    username: str | None = None
    password: str | None = None
    vasp_id: str | None = None
    vas_id: str | None = None
    service_code: str | None = None
    mm7_version: str = "6.8.0"
    mm7_namespace: str = (
        "http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/REL-6-MM7-1-4"
    )
    profile: str = "default"
    # What the MMSC presents on its requests to our /mm7: HTTP Basic and/or source networks.
    inbound_username: str | None = None
    inbound_password: str | None = None
    inbound_ips: tuple[str, ...] = ()  # CIDRs
    max_mps: float | None = None  # shared by every worker
    concurrency: int | None = None  # submits in flight per worker
    operators: tuple[int, ...] = ()
    prefixes: tuple[str, ...] = ()
    default: bool = False
    # How recipients are written in SubmitReq: "digits" (447900000001) or "e164"
    # (+447900000001), as the MMSC expects.
    number_format: str = "digits"
    # Whether the MMSC shows an alphanumeric sender (a send's from-mask) instead of the
    # number; a send with a mask to a route without it is refused (E115).
    sender_mask: bool = False


NUMBER_FORMATS = ("digits", "e164")


@dataclasses.dataclass(frozen=True, slots=True)
class SmsRoute:
    """Where fallback SMS go."""

    name: str
    kind: str = "simulator"
    host: str | None = None
    port: int | None = None
    system_id: str | None = None
    password: str | None = None
    system_type: str | None = None
    url: str | None = None  # kannel: the smsbox sendsms URL
    username: str | None = None
    smsc: str | None = None  # kannel: the smsc-id to route through
    # smpp: address numbering (None: chosen from the address: international, short code or
    # alphanumeric), window of unanswered submits, submits per second, keep-alive.
    source_ton: int | None = None
    source_npi: int | None = None
    dest_ton: int = 1
    dest_npi: int = 1
    window: int = 10
    max_sps: float | None = None
    enquire_link_seconds: float = 30.0
    # How the SMSC writes message ids: Kannel's msg-id-type (0: decimal in both submit_sm_resp
    # and receipt, 1: hex submit, decimal receipt, 2: decimal submit, hex receipt, 3: hex in
    # both; an id not all digits is hex whatever it says, see carriers/smpp_receipt). None:
    # take the receipt's id as the submit's.
    msg_id_type: int | None = None
    # kannel: the token /kannel/dlr requires in the dlr-urls of this route (None: derived
    # from the sendsms password, see receipt_token).
    dlr_token: str | None = None
    default: bool = False

    def receipt_token(self) -> str:
        """The token a kannel route's dlr-urls carry; /kannel/dlr applies no receipt without it.

        It comes from the config file, not from the database or the data dir: every `run`,
        `serve` and `worker` process must read the same `[[sms_routes]]` to know the route at
        all, so a token made from it is the same in all of them and survives restarts, with
        no state to create, share or migrate. By default it is derived (HMAC-SHA256, keyed by
        the sendsms password, which Kannel requires and only Kannel shares) so that no setting
        is needed and the password itself never appears in a URL; `dlr_token` sets it
        outright, for instance to keep it when the password changes."""
        if self.dlr_token:
            return self.dlr_token
        if not self.password:
            raise ValueError(f"sms route {self.name} has neither dlr_token nor password")
        message = f"mmsgate kannel dlr-url {self.name}".encode()
        return hmac.new(self.password.encode(), message, hashlib.sha256).hexdigest()[:32]


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable, validated; pass it explicitly, never read it globally."""

    data_dir: Path = Path("mmsgate-data")
    database_url: str | None = None
    public_base_url: str | None = None  # default: http://HOST:PORT of this server
    # Where the simulator route submits: `mmsgate run` starts one of its own and points here;
    # a separate `mmsgate worker` uses `mmsgate carrier-sim` on its default port.
    simulator_url: str = "http://127.0.0.1:8090/mm7"
    simulator_smsc: str = "127.0.0.1:2775"  # where the simulator SMS route binds (SMPP)
    # The HTTP Basic pair the simulated MMSC presents on /mm7 (`carrier-sim --report-username
    # and --report-password`); `mmsgate run` generates one. Simulator routes without inbound
    # credentials of their own accept this pair.
    simulator_inbound_username: str | None = None
    simulator_inbound_password: str | None = None
    worker_concurrency: int = 256  # jobs a worker runs at once (their leases are renewed)
    # A claimed job is another worker's to take once its lease runs out (a worker that died).
    worker_lease_seconds: float = 300.0
    # /readyz and /metrics call the queue stalled when jobs have been due this long and no
    # worker has claimed in that time (a worker's loop that ended, or claims that fail).
    worker_stall_seconds: float = 60.0
    # Done jobs (delivered postbacks, finished deliveries) are deleted after this many days;
    # dead ones are kept for `postbacks replay`. 0 keeps them all.
    done_jobs_kept_days: float = 7.0
    host: str = "127.0.0.1"
    port: int = 8080
    # /metrics: a bearer token scrapers must send, and/or an address of its own (HOST:PORT)
    # where it is served instead of on the API port. With neither, the API port serves it to
    # loopback clients only.
    metrics_token: str | None = None
    metrics_listen: str | None = None
    log_format: LogFormat = LogFormat.CONSOLE
    media: MediaSettings = MediaSettings()
    api: ApiSettings = ApiSettings()
    postbacks: PostbackSettings = PostbackSettings()
    routes: tuple[Route, ...] = ()
    sms_routes: tuple[SmsRoute, ...] = ()
    profiles: Mapping[str, CarrierProfile] = dataclasses.field(
        default_factory=lambda: dict(PROFILES)
    )

    @property
    def db_url(self) -> str:
        """The SQLAlchemy URL: the configured one, or SQLite inside the data dir."""
        if self.database_url:
            return normalize_database_url(self.database_url)
        return f"sqlite+aiosqlite:///{(self.data_dir / 'mmsgate.db').resolve()}"

    @property
    def public_url(self) -> str:
        """The base of links mmsgate hands out (MO content, hosted pages)."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """`metrics_listen` as (host, port), or None when metrics share the API port."""
        return None if self.metrics_listen is None else listen_address(self.metrics_listen)

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def profile_names(self) -> list[str]:
        """The carrier profiles templates are prepared for: the default and every route's."""
        return sorted({"default"} | {r.profile for r in self.routes})

    @property
    def profiles_in_use(self) -> list[CarrierProfile]:
        """The profiles themselves, as the config file may have changed them."""
        return [self.profiles[name] for name in self.profile_names]

    @property
    def simulated(self) -> bool:
        """True when no real carrier route is configured: everything goes to the simulator."""
        return all(r.kind == "simulator" for r in self.routes)


def normalize_database_url(url: str) -> str:
    """Accept plain `postgresql://` and `sqlite:///` URLs and pick the async drivers."""
    for plain, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite:///", "sqlite+aiosqlite:///"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    if url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite:///")):
        return url
    raise ConfigError(f"database url: unsupported scheme in {url.split('://')[0]!r}")


def listen_address(value: str, key: str = "metrics_listen") -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets: `[::1]:9100`) as (host, port), or ConfigError."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isascii() or not port.isdecimal():
        raise ConfigError(f"{key}: expected HOST:PORT such as 127.0.0.1:9100, got {value!r}")
    if not 1 <= int(port) <= 65535:
        raise ConfigError(f"{key}: port {port} is not between 1 and 65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not all(_HOST_LABEL.fullmatch(label) for label in host.split(".")):
            raise ConfigError(f"{key}: {host!r} is not an IP address or host name") from None
    return host, int(port)


_HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_WILDCARD = ("0.0.0.0", "::", "")  # noqa: S104 - compared against, never bound


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _env_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name}: expected a boolean, got {value!r}")


def _build(cls: type[S], table: Mapping[str, object], where: str) -> S:
    """Build a settings dataclass from a TOML table, naming any unknown or mistyped key."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, object] = {}
    for key, value in table.items():
        field = fields.get(key)
        if field is None:
            raise ConfigError(f"{where}.{key}: unknown setting")
        values[key] = _coerce(value, field, f"{where}.{key}")
    try:
        return _made(cls, values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _profiles(table: object) -> dict[str, CarrierProfile]:
    """The shipped profiles with `[profiles.NAME]` tables applied: a known name is changed
    key by key; a new name starts from `base` (default: the default profile)."""
    if not isinstance(table, dict):
        raise ConfigError("profiles: expected [profiles.NAME] tables")
    profiles = dict(PROFILES)
    fields = {f.name: f for f in dataclasses.fields(CarrierProfile) if f.name != "name"}
    for name, item in table.items():
        where = f"profiles.{name}"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a table")
        base_name = item.get("base", name if name in PROFILES else "default")
        if base_name not in profiles:
            raise ConfigError(f"{where}.base: unknown profile {base_name!r}")
        changes: dict[str, object] = {}
        for key, value in item.items():
            if key == "base":
                continue
            if key not in fields:
                raise ConfigError(f"{where}.{key}: unknown setting")
            changes[key] = _coerce(value, fields[key], f"{where}.{key}")
        budget = changes.get("budget_bytes", 1)
        if isinstance(budget, int) and budget <= 0:
            raise ConfigError(f"{where}.budget_bytes: must be positive")
        profiles[name] = _changed(profiles[base_name], {"name": name, **changes})
    return profiles


def _made(cls: type[S], values: Mapping[str, object]) -> S:
    """`cls(**values)`, each value checked against its field by `_coerce` (or built so)."""
    make: Callable[..., S] = cls
    return make(**values)


def _changed(settings: S, changes: Mapping[str, object]) -> S:
    """`dataclasses.replace` with values checked as `_made`'s are."""
    return dataclasses.replace(settings, **changes)


def _coerce(value: object, field: dataclasses.Field[object], where: str) -> object:
    kind = str(field.type)
    if kind.startswith("tuple"):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list")
        return tuple(value)
    if kind == "bool" and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false")
    if kind in ("int", "int | None") and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: expected an integer")
    if kind in ("float", "float | None"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number")
        return float(value)
    if kind in ("str", "str | None") and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string")
    if kind == "LogFormat":
        return _log_format(value, where)
    if kind == "Path":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string")
        return Path(value)
    return value


def _log_format(value: object, where: str) -> LogFormat:
    try:
        return LogFormat(value if isinstance(value, str) else repr(value))
    except ValueError:
        raise ConfigError(f"{where}: expected 'console' or 'json', got {value!r}") from None


def load(
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: object,
) -> Settings:
    """Read the TOML file (if any), then `MMSGATE_*` variables, then explicit overrides."""
    env = env or {}
    path = config_path or (Path(env["MMSGATE_CONFIG"]) if env.get("MMSGATE_CONFIG") else None)
    table: dict[str, object] = {}
    if path is not None:
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
    return _from_table(table, env, overrides)


def _from_table(
    table: dict[str, object], env: Mapping[str, str], overrides: dict[str, object]
) -> Settings:
    top: dict[str, object] = {}
    sections = {"media": MediaSettings, "api": ApiSettings, "postbacks": PostbackSettings}
    for key, value in table.items():
        if key in sections:
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a table")
            top[key] = _build(sections[key], value, key)
        elif key in ("routes", "sms_routes"):
            cls = Route if key == "routes" else SmsRoute
            if not isinstance(value, list):
                raise ConfigError(f"{key}: expected [[{key}]] tables")
            top[key] = tuple(_build(cls, item, f"{key}[{i}]") for i, item in enumerate(value))
        elif key == "profiles":
            top[key] = _profiles(value)
        elif key in (
            "data_dir",
            "database_url",
            "public_base_url",
            "simulator_url",
            "simulator_smsc",
            "simulator_inbound_username",
            "simulator_inbound_password",
            "host",
            "port",
            "worker_concurrency",
            "worker_lease_seconds",
            "worker_stall_seconds",
            "done_jobs_kept_days",
            "metrics_token",
            "metrics_listen",
            "log_format",
        ):
            field = next(f for f in dataclasses.fields(Settings) if f.name == key)
            top[key] = _coerce(value, field, key)
        else:
            raise ConfigError(f"{key}: unknown setting")
    settings = _made(Settings, top)
    settings = _apply_env(settings, env)
    settings = _changed(settings, {k: v for k, v in overrides.items() if v is not None})
    _check_routes(settings)
    _check_worker(settings)
    _check_api(settings.api)
    _check_shares(settings)
    if not 1 <= settings.port <= 65535:
        raise ConfigError(f"port {settings.port}: a port is 1 to 65535 (--port, or port =)")
    _check_metrics(settings)
    return settings


def _check_metrics(settings: Settings) -> None:
    """A token a header can carry, and an address that can be bound and is not the API's."""
    token = settings.metrics_token
    if token is not None and (not token or any(c.isspace() for c in token)):
        raise ConfigError("metrics_token: must be non-empty, without spaces")
    address = settings.metrics_address
    if address is None or address[1] != settings.port:
        return
    if address[0] == settings.host or _WILDCARD.count(address[0]) + _WILDCARD.count(settings.host):
        raise ConfigError(f"metrics_listen: {settings.metrics_listen} is the API's own address")


def _check_api(api: ApiSettings) -> None:
    """Limits a server could not run with: a timeout that closes every connection at once,
    a cap below zero."""
    for key in ("read_timeout", "body_timeout"):
        if getattr(api, key) <= 0:
            raise ConfigError(f"api.{key}: must be a positive number of seconds")
    if api.max_connections_per_client < 0:
        raise ConfigError("api.max_connections_per_client: must be 0 (no cap) or more")
    if api.max_body_bytes < 1:
        raise ConfigError("api.max_body_bytes: must be 1 or more")


def _check_worker(settings: Settings) -> None:
    """Values a worker could not run with: no slots, a lease it renews without pause, a
    stall no beat could come in time for, a negative age that would delete every finished
    job at once."""
    if settings.worker_concurrency < 1:
        raise ConfigError("worker_concurrency: must be 1 or more")
    if settings.worker_lease_seconds <= 0:
        raise ConfigError("worker_lease_seconds: must be positive")
    if settings.worker_stall_seconds <= 0:
        raise ConfigError("worker_stall_seconds: must be positive")
    if settings.done_jobs_kept_days < 0:
        raise ConfigError("done_jobs_kept_days: must be 0 (keep all) or more")


def _check_shares(settings: Settings) -> None:
    """Limits that would stop fetches or postbacks altogether."""
    media, postbacks = settings.media, settings.postbacks
    for key in ("max_concurrent_fetches", "max_fetches_per_account", "max_fetches_per_host"):
        if getattr(media, key) < 1:
            raise ConfigError(f"media.{key}: must be 1 or more")
    if postbacks.per_host < 1:
        raise ConfigError("postbacks.per_host: must be 1 or more")
    if postbacks.timeout <= 0:
        raise ConfigError("postbacks.timeout: must be positive")


def _apply_env(settings: Settings, env: Mapping[str, str]) -> Settings:
    changes: dict[str, object] = {}
    if env.get("MMSGATE_DATA_DIR"):
        changes["data_dir"] = Path(env["MMSGATE_DATA_DIR"])
    if env.get("MMSGATE_DATABASE_URL"):
        normalize_database_url(env["MMSGATE_DATABASE_URL"])
        changes["database_url"] = env["MMSGATE_DATABASE_URL"]
    for key in ("simulator_inbound_username", "simulator_inbound_password"):
        if env.get(f"MMSGATE_{key.upper()}"):
            changes[key] = env[f"MMSGATE_{key.upper()}"]
    if env.get("MMSGATE_PUBLIC_BASE_URL"):
        changes["public_base_url"] = env["MMSGATE_PUBLIC_BASE_URL"].rstrip("/")
    for key in ("metrics_token", "metrics_listen"):
        if env.get(f"MMSGATE_{key.upper()}"):
            changes[key] = env[f"MMSGATE_{key.upper()}"]
    if env.get("MMSGATE_LOG_FORMAT"):
        changes["log_format"] = _log_format(env["MMSGATE_LOG_FORMAT"], "MMSGATE_LOG_FORMAT")
    media = settings.media
    if "MMSGATE_ALLOW_PRIVATE_NETWORKS" in env:
        allow = _env_bool("MMSGATE_ALLOW_PRIVATE_NETWORKS", env["MMSGATE_ALLOW_PRIVATE_NETWORKS"])
        media = dataclasses.replace(media, allow_private_networks=allow)
    if "MMSGATE_MEDIA_STRICT" in env:
        media = dataclasses.replace(
            media, strict=_env_bool("MMSGATE_MEDIA_STRICT", env["MMSGATE_MEDIA_STRICT"])
        )
    changes["media"] = media
    return _changed(settings, changes)


def _check_routes(settings: Settings) -> None:
    for i, route in enumerate(settings.routes):
        if route.kind not in ("mm7", "simulator"):
            raise ConfigError(f"routes[{i}].kind: expected 'mm7' or 'simulator'")
        if route.kind == "mm7" and not route.url:
            raise ConfigError(f"routes[{i}].url: required for an mm7 route")
        if route.number_format not in NUMBER_FORMATS:
            raise ConfigError(
                f"routes[{i}].number_format: route {route.name!r}: expected 'digits' or "
                f"'e164', got {route.number_format!r}"
            )
        _check_inbound(f"routes[{i}] ({route.name})", route)
        _check_prefixes(f"routes[{i}].prefixes", route.prefixes)
    if bool(settings.simulator_inbound_username) != bool(settings.simulator_inbound_password):
        raise ConfigError(
            "simulator_inbound_username and simulator_inbound_password: give both or neither"
        )
    for i, sms in enumerate(settings.sms_routes):
        if sms.kind not in ("smpp", "kannel", "simulator"):
            raise ConfigError(f"sms_routes[{i}].kind: expected 'smpp', 'kannel' or 'simulator'")
        if sms.kind == "smpp" and not (sms.host and sms.port and sms.system_id):
            raise ConfigError(f"sms_routes[{i}]: an smpp route needs host, port and system_id")
        if sms.kind == "kannel" and not sms.url:
            raise ConfigError(f"sms_routes[{i}].url: required for a kannel route")
        if sms.kind == "kannel" and not (sms.password or sms.dlr_token):
            raise ConfigError(f"sms_routes[{i}].password: required for a kannel route")
        if sms.msg_id_type not in (None, 0, 1, 2, 3):
            raise ConfigError(f"sms_routes[{i}].msg_id_type: expected 0, 1, 2 or 3")
        if sms.window < 1:
            raise ConfigError(f"sms_routes[{i}].window: must be at least 1")
    if sum(r.default for r in settings.sms_routes) > 1:
        raise ConfigError("sms_routes: more than one route has default = true")
    for i, route in enumerate(settings.routes):
        if route.profile not in settings.profiles:
            raise ConfigError(f"routes[{i}].profile: unknown profile {route.profile!r}")
    if sum(r.default for r in settings.routes) > 1:
        raise ConfigError("routes: more than one route has default = true")


def _check_prefixes(where: str, prefixes: tuple[str, ...]) -> None:
    """Numbers are routed as digits (447900000001): a prefix written `+44` or `44 79` would
    never match one, outbound or on /mm7, so it is refused with the spelling that works."""
    for prefix in prefixes:
        if not isinstance(prefix, str) or not (prefix.isascii() and prefix.isdigit()):
            hint = "".join(c for c in str(prefix) if c.isascii() and c.isdigit())
            raise ConfigError(
                f"{where}: {prefix!r} is not digits; write it as numbers are matched, "
                f"without '+' or spaces ({hint!r})"
            )


def _check_inbound(where: str, route: Route) -> None:
    """What an MMSC must present on /mm7 to act for this route: a Basic pair, source
    networks, or both. A simulator route may have neither: it takes the simulator's pair."""
    if bool(route.inbound_username) != bool(route.inbound_password):
        raise ConfigError(f"{where}: inbound_username and inbound_password go together")
    for cidr in route.inbound_ips:
        try:
            ipaddress.ip_network(cidr if isinstance(cidr, str) else "-", strict=False)
        except ValueError:
            raise ConfigError(f"{where}.inbound_ips: {cidr!r} is not an address or CIDR") from None
    if route.kind == "mm7" and not route.inbound_username and not route.inbound_ips:
        raise ConfigError(
            f"{where}: set inbound_username and inbound_password (the HTTP Basic pair its "
            "MMSC presents on /mm7) or inbound_ips, or anyone could report for this route"
        )
