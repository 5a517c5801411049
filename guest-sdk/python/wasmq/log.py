"""Logging into the host's log, tagged with the plugin and the task.

The host caps the bytes a task may log (``limits.max_log``; `print` and
stderr count too): past it the attempt fails as `log-limit`.
"""

from . import _bindings

__all__ = ["trace", "debug", "info", "warn", "warning", "error"]


def _log(level_name: str, message) -> None:
    log = _bindings.log
    log.log(getattr(log.Level, level_name), str(message))


def trace(message) -> None:
    """Writes a line at trace level."""
    _log("TRACE", message)


def debug(message) -> None:
    """Writes a line at debug level."""
    _log("DEBUG", message)


def info(message) -> None:
    """Writes a line at info level."""
    _log("INFO", message)


def warn(message) -> None:
    """Writes a line at warn level."""
    _log("WARN", message)


warning = warn


def error(message) -> None:
    """Writes a line at error level."""
    _log("ERROR", message)
