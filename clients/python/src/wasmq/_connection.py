"""How the client reaches Redis: the URL forms of docs/PROTOCOL.md, TLS
options, connection names, and Redis errors turned into wasmq errors."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import unquote, urlsplit

from .errors import InvalidTaskError, RedisUnreachableError, TlsError, WasmqError

DEFAULT_URL = "redis://127.0.0.1:6379"


def default_name(language: str = "python") -> str:
    """``wasmq:client:python:<host>:<pid>``: what the client's connections
    are called in ``CLIENT LIST`` unless told otherwise."""
    return f"wasmq:client:{language}:{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Target:
    """Where Redis is: one server, a cluster or Sentinels, and how to
    connect to it."""

    #: "single", "cluster" or "sentinel".
    mode: str
    #: (host, port) of the server, the seed nodes or the Sentinels.
    nodes: list
    tls: bool
    username: Optional[str]
    password: Optional[str]
    db: int = 0
    #: The master's name, for Sentinel.
    master: Optional[str] = None
    #: The URL with any password hidden, for messages.
    shown: str = ""
    kwargs: dict = field(default_factory=dict)


def _host_port(text: str, scheme: str, shown: str) -> tuple:
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":") or "6379"
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "6379")
    if not host:
        raise InvalidTaskError(f"invalid Redis URL {shown!r}: no host in {text!r}")
    try:
        return host, int(port)
    except ValueError:
        raise InvalidTaskError(f"invalid Redis URL {shown!r}: bad port {port!r}") from None


def redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
    return f"{scheme}://{user}:***@{host}"


def parse_url(
    url: str,
    *,
    name: Optional[str],
    tls_ca: Optional[str] = None,
    tls_cert: Optional[str] = None,
    tls_key: Optional[str] = None,
    tls_skip_hostname_check: bool = False,
) -> Target:
    """Parses ``redis[s]://``, ``redis[s]+cluster://`` and
    ``redis[s]+sentinel://`` URLs with their TLS options."""
    shown = redact(url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise InvalidTaskError(f"invalid Redis URL {shown!r}: no scheme")
    modes = {
        "redis": ("single", False), "rediss": ("single", True),
        "redis+cluster": ("cluster", False), "rediss+cluster": ("cluster", True),
        "redis+sentinel": ("sentinel", False), "rediss+sentinel": ("sentinel", True),
    }
    if scheme not in modes:
        raise InvalidTaskError(
            f"invalid Redis URL {shown!r}: unknown scheme {scheme}://; expected redis://, rediss://, "
            "redis+cluster://, redis+sentinel:// (or their rediss+ forms)"
        )
    mode, tls = modes[scheme]
    if (tls_ca or tls_cert or tls_key or tls_skip_hostname_check) and not tls:
        raise InvalidTaskError(
            f"invalid Redis URL {shown!r}: TLS options were given but the URL's scheme is "
            f"{scheme}://; use {scheme.replace('redis', 'rediss', 1)}:// for TLS"
        )
    if bool(tls_cert) != bool(tls_key):
        raise TlsError("a client certificate needs both tls_cert and tls_key")
    userinfo, _, hosts = rest.rpartition("@")
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    db = 0
    master = None
    if mode == "single":
        parts = urlsplit(f"{scheme}://{hosts}")
        path = parts.path.strip("/")
        if path:
            try:
                db = int(path)
            except ValueError:
                raise InvalidTaskError(f"invalid Redis URL {shown!r}: bad database {path!r}") from None
        nodes = [(parts.hostname or "127.0.0.1", parts.port or 6379)]
    else:
        if mode == "sentinel":
            hosts, _, master = hosts.partition("/")
            if not master:
                raise InvalidTaskError(
                    f"invalid Redis URL {shown!r}: no master name: write {scheme}://HOST:PORT,HOST:PORT,…/MASTER"
                )
        hosts = hosts.rstrip("/")
        nodes = [_host_port(node, scheme, shown) for node in hosts.split(",") if node.strip()]
        if not nodes:
            raise InvalidTaskError(f"invalid Redis URL {shown!r}: no nodes listed")
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": 3,
        "socket_timeout": 15,
        "client_name": name,
    }
    if username:
        kwargs["username"] = username
    if password is not None:
        kwargs["password"] = password
    if tls:
        kwargs.update(
            ssl=True,
            ssl_cert_reqs="required",
            ssl_check_hostname=not tls_skip_hostname_check,
        )
        for option, path in (("ssl_ca_certs", tls_ca), ("ssl_certfile", tls_cert), ("ssl_keyfile", tls_key)):
            if path:
                if not os.path.isfile(path):
                    raise TlsError(f"cannot read the TLS file {path}: no such file")
                kwargs[option] = path
    return Target(
        mode=mode, nodes=nodes, tls=tls, username=username, password=password,
        db=db, master=master, shown=shown, kwargs=kwargs,
    )


def explain_tls(text: str) -> Optional[str]:
    """What a TLS failure's text means, in words that say what to do."""
    lowered = text.lower()
    if "unable to get local issuer" in lowered or "self-signed certificate" in lowered or "self signed certificate" in lowered or "unknown ca" in lowered:
        return ("the server's certificate is not signed by a CA this client trusts (unknown issuer): "
                "pass the CA certificate that signed it as tls_ca")
    if "certificate has expired" in lowered:
        return "the server's certificate has expired: renew it on the server"
    if "not yet valid" in lowered:
        return "the server's certificate is not valid yet: check the clocks of the server and this host"
    if "hostname mismatch" in lowered or "ip address mismatch" in lowered:
        return ("the server's certificate does not name the host connected to: connect by a name it lists, "
                "or pass tls_skip_hostname_check=True to accept it anyway")
    if "certificate required" in lowered:
        return "the server requires a client certificate: pass tls_cert and tls_key"
    if "wrong version number" in lowered or "record layer failure" in lowered or "unexpected eof while reading" in lowered and "ssl" in lowered:
        return "the server did not answer in TLS: it may serve plain text on this port (use redis:// or the server's tls-port)"
    return None


def translate(err: BaseException, shown: str) -> WasmqError:
    """A redis-py exception as the wasmq error a caller branches on."""
    import redis.exceptions as rex
    from redis.sentinel import MasterNotFoundError

    if isinstance(err, WasmqError):
        return err
    text = str(err)
    problem = explain_tls(text)
    if problem is not None:
        return TlsError(f"TLS connection to Redis at {shown} failed: {problem} ({text})")
    if isinstance(err, (rex.AuthenticationError, rex.AuthenticationWrongNumberOfArgsError)) or "NOAUTH" in text or "WRONGPASS" in text:
        return WasmqError(f"Redis at {shown} refused the password (or needs one): {text}")
    if "OOM command not allowed" in text:
        return WasmqError(
            f"Redis at {shown} is out of memory: it is at its maxmemory and refuses writes; nothing was written"
        )
    if isinstance(err, (rex.ConnectionError, rex.TimeoutError, OSError, rex.ClusterDownError, MasterNotFoundError)) or "READONLY" in text or "LOADING" in text:
        return RedisUnreachableError(f"Redis at {shown} is unreachable: {text}")
    return WasmqError(f"Redis at {shown} refused a command: {text}")
