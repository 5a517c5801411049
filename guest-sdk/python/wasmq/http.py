"""Outgoing HTTP (capability ``http``): plain requests over ``wasi:http``,
to the hosts the plugin's manifest lists. The host refuses any other host,
caps the response size and times requests out; each refusal raises
`HttpError` (a `CapabilityError`: uncaught, the attempt is retried).

Python's own ``urllib`` and ``http.client`` need sockets, which plugins do
not get: use this module.
"""

import json as _json
import typing

from . import _bindings
from ._failure import CapabilityError

__all__ = ["HttpError", "Response", "get", "post", "request"]

_READ_CHUNK = 64 * 1024
_WRITE_CHUNK = 4096


class HttpError(CapabilityError):
    """A request failed: refused by the host (a host not granted, a response
    over the cap), a timeout, or a network error."""

    def __init__(self, message: str):
        super().__init__(f"HTTP request failed: {message}")


class Response:
    """A response, read in full."""

    def __init__(self, status: int, headers, body: bytes):
        self.status = status
        """The status code."""
        self.headers: typing.List[typing.Tuple[str, bytes]] = headers
        """The headers, as sent."""
        self.body = body
        """The body."""

    def text(self) -> str:
        """The body as text (UTF-8, lossy)."""
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        """The body decoded as JSON."""
        return _json.loads(self.body)

    def __repr__(self):
        return f"Response(status={self.status}, {len(self.body)} bytes)"


def get(url: str, headers=None) -> Response:
    """``GET url``."""
    return request("GET", url, headers=headers)


def post(url: str, body, content_type: str = "application/json", headers=None) -> Response:
    """``POST url`` with `body` (bytes, text, or any other value sent as JSON)."""
    if not isinstance(body, (bytes, bytearray, str)):
        body = _json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    headers = list((headers or {}).items()) if isinstance(headers, dict) else list(headers or [])
    headers.append(("content-type", content_type))
    return request("POST", url, headers=headers, body=bytes(body))


def _types():
    if _bindings.outgoing_handler is None or _bindings.http_types is None:
        raise HttpError(
            "the plugin's manifest does not grant `http`; add [capabilities.http] with an allow list to wasmq.toml"
        )
    return _bindings.http_types


def request(method: str, url: str, headers=None, body: typing.Optional[bytes] = None) -> Response:
    """Sends a request and reads the whole response."""
    from componentize_py_types import Err

    t = _types()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise HttpError(f"{url!r} is not an http:// or https:// URL")
    schemes = {"http": t.Scheme_Http(), "https": t.Scheme_Https()}
    if scheme not in schemes:
        raise HttpError(f"unsupported scheme {scheme!r}")
    authority, slash, path = rest.partition("/")
    path = "/" + path if slash else "/"
    methods = {
        "GET": t.Method_Get(),
        "POST": t.Method_Post(),
        "PUT": t.Method_Put(),
        "DELETE": t.Method_Delete(),
        "PATCH": t.Method_Patch(),
        "HEAD": t.Method_Head(),
    }
    if isinstance(headers, dict):
        headers = list(headers.items())
    entries = [
        (name, value.encode() if isinstance(value, str) else bytes(value))
        for name, value in (headers or [])
    ]
    try:
        fields = t.Fields.from_list(entries)
    except Err as err:
        raise HttpError(f"invalid headers: {err.value}") from None
    outgoing = t.OutgoingRequest(fields)
    try:
        outgoing.set_method(methods.get(method.upper(), t.Method_Other(method)))
        outgoing.set_scheme(schemes[scheme])
        outgoing.set_authority(authority)
        outgoing.set_path_with_query(path)
    except Err:
        raise HttpError(f"invalid request {method} {url}") from None
    outgoing_body = outgoing.body()
    if body:
        with outgoing_body.write() as stream:
            for start in range(0, len(body), _WRITE_CHUNK):
                try:
                    stream.blocking_write_and_flush(body[start : start + _WRITE_CHUNK])
                except Err as err:
                    raise HttpError(f"writing the request body: {err.value}") from None
    t.OutgoingBody.finish(outgoing_body, None)
    try:
        future = _bindings.outgoing_handler.handle(outgoing, None)
    except Err as err:
        raise HttpError(_describe(err.value)) from None
    with future:
        while True:
            result = future.get()
            if result is not None:
                break
            with future.subscribe() as pollable:
                pollable.block()
    if isinstance(result, Err):
        raise HttpError("the response was already taken")
    inner = result.value
    if isinstance(inner, Err):
        raise HttpError(_describe(inner.value))
    response = inner.value
    with response:
        status = response.status()
        with response.headers() as fields:
            received = fields.entries()
        incoming = response.consume()
        chunks = []
        with incoming:
            with incoming.stream() as stream:
                while True:
                    try:
                        chunks.append(stream.blocking_read(_READ_CHUNK))
                    except Err as err:
                        if type(err.value).__name__ == "StreamError_Closed":
                            break
                        raise HttpError(f"reading the response body: {_describe(err.value)}") from None
    return Response(status, received, b"".join(chunks))


def _describe(error) -> str:
    name = type(error).__name__.replace("ErrorCode_", "")
    value = getattr(error, "value", None)
    if value is None:
        return name
    if hasattr(value, "to_debug_string"):
        return f"{name}: {value.to_debug_string()}"
    return f"{name}: {value}"
