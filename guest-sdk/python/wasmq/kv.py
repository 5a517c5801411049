"""The plugin's key-value store (capability ``kv``): shared by all its
tasks, kept by the host in Redis, invisible to other plugins.

Every call raises `CapabilityError` when the host refuses it (the manifest
does not grant ``kv``, a value over its cap, too many keys).
"""

import typing

from . import _bindings
from ._failure import CapabilityError

__all__ = ["get", "set", "delete", "increment"]


def _store():
    if _bindings.kv is None:
        raise CapabilityError(
            "kv: the plugin's manifest does not grant `kv`; add [capabilities.kv] to wasmq.toml"
        )
    return _bindings.kv


def _call(function, *args):
    from componentize_py_types import Err

    try:
        return function(*args)
    except Err as err:
        raise CapabilityError(str(err.value)) from None


def _bytes(value) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def get(key: str) -> typing.Optional[bytes]:
    """The value of `key`, or None when it is not set."""
    return _call(_store().get, key)


def set(key: str, value) -> None:  # noqa: A001 - the store's vocabulary
    """Sets `key` to `value` (bytes, or text stored as UTF-8)."""
    _call(_store().set, key, _bytes(value))


def delete(key: str) -> bool:
    """Removes `key`; True if it was set."""
    return _call(_store().delete, key)


def increment(key: str, by: int = 1) -> int:
    """Adds `by` to the integer at `key` (0 when unset) and returns the sum."""
    return _call(_store().increment, key, by)
