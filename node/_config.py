"""Node configuration: TOML file + ``CLOUDISENSE_*`` environment + CLI flags.

Precedence (highest first): CLI flags, environment variables, the TOML file,
defaults.  Nested keys use ``__`` in variables: ``CLOUDISENSE_BROKER__URL``.
"""

from __future__ import annotations

import re
import socket
import tomllib
from pathlib import Path
from urllib.parse import urlsplit
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ._errors import ConfigError
from ._topics import topic_error

#: Where clients (the CLI, agent, TUI, MCP server, scripts) look for a node unless told otherwise.
DEFAULT_URL = "ws://127.0.0.1:8765/ws"

NODE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
#: Environment variable names that may hold a secret: never inherited by a pattern, redacted when shown.
SECRET_NAME = re.compile(r"^CLOUDISENSE_|TOKEN|SECRET|PASSW|KEY|CREDENTIAL|AUTH|COOKIE", re.IGNORECASE)
#: Config fields whose values are secrets (``key``/``cert`` fields are file paths, shown as they are).
_SECRET_FIELD = re.compile(r"passw|secret|token|sha256|api_?key|credential", re.IGNORECASE)
REDACTED = "***"


def node_id_error(node_id: object) -> str | None:
    """Why ``node_id`` can't be used as a node id (it goes into MQTT topics), or None."""
    if not isinstance(node_id, str) or not NODE_ID_RE.match(node_id):
        return (f"node id {node_id!r} is not valid: use 1-64 letters, digits, '-', '_' or '.', "
                "starting with a letter or digit (no '/', '+', '#', spaces)")
    return None


def broker_urls(value: str) -> list[str]:
    """The broker URLs of a ``broker.url`` (one, or several comma-separated), in order."""
    return [u.strip() for u in value.split(",")]


def parse_hostport(value: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = default_host, value
    host = host.strip("[]") or default_host
    try:
        p = int(port)
    except ValueError:
        raise ValueError(f"{value!r} is not HOST:PORT") from None
    if not 0 <= p <= 65535:
        raise ValueError(f"port {p} out of range")
    return host, p


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WsConfig(_Section):
    listen: str = "127.0.0.1:8765"
    tls_cert: str = ""
    tls_key: str = ""
    max_frame_bytes: int = Field(1_048_576, ge=1024)
    max_pending_calls: int = Field(256, ge=1)
    max_subscriptions: int = Field(256, ge=1)
    rate_limit: float = Field(2000.0, gt=0, description="frames per second per client (token bucket)")
    rate_burst: int = Field(4000, ge=1)
    send_queue: int = Field(1024, ge=8, description="events queued per client before dropping the oldest")
    slow_close_seconds: float = Field(10.0, gt=0, description="a client dropping events this long is closed (1008)")
    require_auth_remote: bool = Field(True, description="refuse to listen on a non-loopback address without tokens")
    # --- browsers (docs/security.md "Browsers") ---
    allowed_origins: list[str] = Field([], description="browser origins (scheme://host[:port]) allowed to open the "
                                       "socket besides the node's own; '*' allows any, 'null' sandboxed pages")
    allowed_hosts: list[str] = Field([], description="Host names (host or host:port) accepted besides the loopback "
                                     "names on a loopback listener (e.g. behind a reverse proxy)")
    # --- connections and budgets ---
    max_clients: int = Field(1024, ge=1, description="clients at once; more are refused at the handshake (503)")
    hello_timeout: float = Field(10.0, gt=0, description="seconds a new client has to authenticate when tokens are "
                                 "configured; then it is closed (1008)")
    auth_fail_limit: int = Field(10, ge=1, description="failed hellos from one address within auth_fail_window "
                                 "that get it refused for auth_block_seconds")
    auth_fail_window: float = Field(60.0, gt=0)
    auth_block_seconds: float = Field(60.0, gt=0)
    send_buffer_bytes: int = Field(4 * 1_048_576, ge=65_536, description="replies, events and frames queued for "
                                   "one client; over it events are dropped, and a client whose replies don't fit "
                                   "is closed (1008)")
    max_keys: int = Field(20_000, ge=100, description="object keys in one frame (refused before parsing)")
    max_params_keys: int = Field(256, ge=1, description="top-level keys of a call's params")
    audit_log: str = Field("", description="JSONL record of every state-changing call a WebSocket client makes "
                           "(who, what, result; node/_audit.py); default $CLOUDISENSE_STATE_DIR/nodes/ID/"
                           "audit.jsonl, 'none' for no record")

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        parse_hostport(v)
        return v

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        from ._edge import normalize_origin
        for o in v:
            if o not in ("*", "null") and normalize_origin(o) is None:
                raise ValueError(f"{o!r} is not an origin: use scheme://host[:port] (http or https, no path), "
                                 "'*' or 'null'")
        return v


class BrokerConfig(_Section):
    url: str = "embedded"
    embedded_listen: str = "127.0.0.1:1883"
    prefix: str = "cloudisense/v1"
    ca: str = ""
    cert: str = ""
    key: str = ""
    username: str = ""
    password: str = ""
    keepalive: int = Field(10, ge=1, le=3600)
    event_qos: int = Field(0, ge=0, le=1)
    lease_seconds: float = Field(60.0, gt=0, description="remote interest lifetime; refreshed every third of it")
    connect_timeout: float = Field(10.0, gt=0, description="how long start-up waits for a broker (all URLs)")
    attempt_timeout: float = Field(3.0, gt=0, description="how long one connection attempt to one broker URL may "
                                   "take (TCP, TLS, CONNACK) before the next URL in broker.url is tried")

    @field_validator("url", mode="before")
    @classmethod
    def _url(cls, v: Any) -> str:
        # One URL, or several brokers of one cluster (failover): a TOML list, or comma-separated
        # (--broker, CLOUDISENSE_BROKER__URL).  Kept as one comma-separated string.
        if isinstance(v, list):
            if not v or not all(isinstance(x, str) for x in v):
                raise ValueError("a list of broker URLs must hold at least one mqtt://HOST:PORT string")
            v = ",".join(x.strip() for x in v)
        if not isinstance(v, str):
            raise ValueError("must be a string or a list of strings")
        v = str(v).strip()
        if v in ("embedded", "none"):
            return str(v)
        parts = broker_urls(v)
        for i, part in enumerate(parts, 1):
            where = f"URL {i} of {len(parts)} ({part!r})" if len(parts) > 1 else repr(part)
            if part in ("embedded", "none"):
                raise ValueError(f"{where}: 'embedded' and 'none' stand alone, not in a list of brokers")
            if not re.match(r"^mqtts?://[^/,\s]+$", part):
                if len(parts) == 1:
                    raise ValueError("must be 'embedded', 'none', mqtt://HOST:PORT or mqtts://HOST:PORT, or the "
                                     "servers of a clustered broker (a TOML list, or comma-separated)")
                raise ValueError(f"{where} is not mqtt://HOST:PORT or mqtts://HOST:PORT (a scheme on each)")
            try:
                port = urlsplit(part).port
            except ValueError as e:
                raise ValueError(f"{where}: bad port: {e}") from None
            if port == 0 or not urlsplit(part).hostname:
                raise ValueError(f"{where} needs a host and a port from 1 to 65535")
        return ",".join(parts)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v or any(c in v for c in "+#") or v.startswith("/") or v.endswith("/") or "//" in v:
            raise ValueError("must be a plain MQTT topic prefix such as 'cloudisense/v1'")
        return v

    @model_validator(mode="after")
    def _tls_means_mqtts(self) -> "BrokerConfig":
        # A node given TLS files means to talk TLS: never fall back to plaintext silently.
        tls_files = [k for k in ("ca", "cert", "key") if getattr(self, k)]
        if tls_files and (any(u.startswith("mqtt://") for u in broker_urls(self.url)) or self.url == "embedded"):
            raise ValueError(f"broker.{'/'.join(tls_files)} set for TLS, but broker.url {self.url!r} is plaintext: "
                             "use mqtts://HOST:PORT (or drop the TLS files)")
        return self


class SystemConfig(_Section):
    temperature: str = "auto"
    metrics_interval: float = Field(5.0, gt=0)

    @field_validator("temperature")
    @classmethod
    def _temp(cls, v: str) -> str:
        if v == "auto":
            return v
        kind, sep, num = v.partition(":")
        if kind in ("fixed", "sim") and sep:
            try:
                float(num)
                return v
            except ValueError:
                pass
        raise ValueError("must be 'auto', 'fixed:NUMBER' or 'sim:NUMBER'")


class SecurityConfig(_Section):
    key: str = ""
    trust: str = ""
    replay_window: float = Field(30.0, gt=0)
    unicast: Literal["mac", "sig"] = Field(
        "mac", description="how unicast envelopes are authenticated: a pairwise MAC, or an Ed25519 signature "
                           "like nodes before MACs (during a rolling upgrade)")


class TokenConfig(_Section):
    sha256: str
    role: Literal["operator", "viewer"] = "operator"
    name: str = ""

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not re.fullmatch(r"[0-9a-fA-F]{64}", v):
            raise ValueError("must be 64 hex digits (sha256 of the token)")
        return v.lower()


class AuthConfig(_Section):
    tokens: list[TokenConfig] = []


#: What a supervised process inherits from the node's environment unless its ``inherit_env`` says
#: otherwise: enough to run programs and speak the locale, nothing that holds a secret.
DEFAULT_INHERIT_ENV = ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_*", "TZ", "TMPDIR",
                       "TERM", "PYTHONPATH", "VIRTUAL_ENV"]


class ProcessConfig(_Section):
    name: str
    command: list[str]
    cwd: str = ""
    env: dict[str, str] = Field({}, description="variables set for the process (over inherited ones)")
    inherit_env: list[str] = Field(default_factory=lambda: list(DEFAULT_INHERIT_ENV), description=(
        "names of the node's environment variables the process inherits; '*' patterns allowed, but a "
        "pattern never matches a secret-looking name (CLOUDISENSE_*, *TOKEN*, *SECRET*, *PASSWORD*, *KEY*): "
        "name those exactly to pass them on"))
    autostart: bool = True
    restart: bool = Field(True, description="restart with backoff when it exits on its own")
    stop_grace: float = Field(5.0, gt=0, description="seconds between SIGTERM and SIGKILL")
    log_lines: int = Field(500, ge=10)

    @field_validator("command")
    @classmethod
    def _cmd(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("must name a program")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        # it becomes a level of the process's event topics (process/NAME/started)
        if "/" in v or topic_error(v, wildcards=False):
            raise ValueError(f"{v!r} can't be a process name: it goes into event topics (process/NAME/...), "
                             "so no '/', '+', '#' or control characters")
        return v


class ClusterConfig(_Section):
    max_members: int = Field(10_000, ge=2, description="members of the membership table, this node included; "
                             "a new node that finds it full replaces the longest-offline member, or is refused")
    offline_expiry: float = Field(3600.0, gt=0, description="seconds an offline member is kept before it is forgotten")
    confirm_window: float = Field(3.0, gt=0, description="after this node reconnects to the broker, how long a call "
                                  "to a peer not heard from since may wait before it fails as node_offline")
    probe_interval: float = Field(5.0, gt=0, description="seconds between this node's probes of its successor "
                                  "(failure detection, docs/protocol.md §2 Liveness)")
    probe_timeout: float = Field(1.0, gt=0, description="seconds to wait for a probe's ack, then again for the "
                                 "indirect probes' acks, before the target is suspected (stale)")
    indirect_probes: int = Field(3, ge=0, le=16, description="members asked to probe a peer that missed its ack")
    suspect_timeout: float = Field(10.0, gt=0, description="seconds a stale (suspected) member has to refute "
                                   "before it is declared offline")
    stale_after: float = Field(30.0, gt=0, description="a retained presence whose newest heartbeat is older than "
                               "this is not trusted on join: the member is offline (reason stale-on-join)")
    metrics_linger: float = Field(30.0, ge=0, description="seconds this node keeps receiving peers' heartbeats "
                                  "after the last node.cluster that asked for metrics (while nobody watches "
                                  "$cluster/node/state)")


class RpcConfig(_Section):
    timeout: float = Field(10.0, gt=0, description="default deadline of a call without 'timeout'")
    max_timeout: float = Field(300.0, gt=0)


def _default_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_.\-]", "-", socket.gethostname().split(".")[0]) or "node"
    return host[:64]


class LogConfig(_Section):
    level: str = Field("", description="DEBUG, INFO, WARNING or ERROR; empty: --log-level, else $CLOUDISENSE_LOG, "
                                       "else INFO (the --log-level flag wins; SIGHUP applies a change)")


class Settings(BaseSettings):
    """The effective configuration of one node."""

    model_config = SettingsConfigDict(env_prefix="CLOUDISENSE_", env_nested_delimiter="__",
                                      extra="forbid", validate_default=True)

    id: str = Field(default_factory=_default_id)
    ws: WsConfig = WsConfig()
    broker: BrokerConfig = BrokerConfig()
    system: SystemConfig = SystemConfig()
    security: SecurityConfig = SecurityConfig()
    auth: AuthConfig = AuthConfig()
    rpc: RpcConfig = RpcConfig()
    cluster: ClusterConfig = ClusterConfig()
    log: LogConfig = LogConfig()
    processes: list[ProcessConfig] = []
    services: list[str] = Field([], description="plug-in services as 'module:Class'")

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if err := node_id_error(v):
            raise ValueError(err)
        return v

    @field_validator("processes")
    @classmethod
    def _unique(cls, v: list[ProcessConfig]) -> list[ProcessConfig]:
        names = [p.name for p in v]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"process names must be unique; repeated: {', '.join(sorted(dup))}")
        return v

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # CLOUDISENSE_LOG is the CLI's log level (a word such as WARNING), not the [log] table: the env source
        # would try to read it as that table's JSON and refuse to start.  CLOUDISENSE_LOG__LEVEL sets the table.
        env = getattr(env_settings, "env_vars", None)
        if isinstance(env, dict):
            for k in [k for k in env if k.lower() == "cloudisense_log"]:
                del env[k]
        return init_settings, env_settings, _TomlSource(settings_cls)


class _TomlSource(PydanticBaseSettingsSource):
    path: Path | None = None  # set by load_settings for the duration of one load

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if _TomlSource.path is None:
            return {}
        return _read_toml(_TomlSource.path)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None


def load_settings(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Load the effective settings; raise :class:`ConfigError` naming the bad key.

    ``overrides`` (from CLI flags) are nested dicts; pydantic-settings deep-merges
    them over the environment and the file, key by key.
    """
    _TomlSource.path = Path(path) if path else None
    try:
        return Settings(**(overrides or {}))
    except ValidationError as e:
        raise ConfigError(_explain(e, path)) from None
    finally:
        _TomlSource.path = None


def _explain(e: ValidationError, path: str | Path | None) -> str:
    where = f" in {path}" if path else ""
    lines = [f"invalid configuration{where}:"]
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _did_you_mean(err["loc"])
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    """``; did you mean `listen`?`` for an unknown key close to a key of its section, else ``""``."""
    import difflib
    import typing
    model: Any = Settings
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return ""
        ann = field.annotation
        args = [a for a in typing.get_args(ann) if isinstance(a, type)]
        model = args[0] if args else ann
    names = list(getattr(model, "model_fields", {}))
    close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def redacted(settings: Settings) -> dict[str, Any]:
    """The effective config as JSON data with every secret replaced by ``***`` (``--print-config``).

    Redacted: fields named like a password, secret, token or token hash (``broker.password``,
    ``auth.tokens[].sha256``), a password in a URL (``mqtt://user:PASS@host``), and the values
    of ``[[processes]] env`` entries whose names look secret (``OPENAI_API_KEY``, ``*_TOKEN`` …).
    File paths (``security.key``, ``broker.key``, ``ws.tls_key``) are shown: they are not secrets.
    """
    redacted: dict[str, Any] = _redact(settings.model_dump(mode="json"), names=_SECRET_FIELD)
    return redacted


def _redact(x: Any, names: re.Pattern[str]) -> Any:
    if isinstance(x, dict):
        out: dict[Any, Any] = {}
        for k, v in x.items():
            if isinstance(v, str) and v and names.search(k):
                out[k] = REDACTED
            elif k == "env" and isinstance(v, dict):
                out[k] = {n: REDACTED if SECRET_NAME.search(n) else val for n, val in v.items()}
            elif k == "url" and isinstance(v, str):
                out[k] = re.sub(r"(^|,)([a-z]+://[^:/@,]*):[^@/,]*@", rf"\1\2:{REDACTED}@", v)
            else:
                out[k] = _redact(v, names)
        return out
    if isinstance(x, list):
        return [_redact(v, names) for v in x]
    return x
