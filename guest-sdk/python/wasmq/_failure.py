"""Failures: what a handler raises to tell the host what to do next."""


class Failure(Exception):
    """Why a handler produced no result, and what the host should do.

    Raise ``Failure.retry(msg)``, ``Failure.give_up(msg)`` or
    ``Failure.bad_payload(msg)``.
    """

    RETRY = "retry"
    GIVE_UP = "give-up"
    BAD_PAYLOAD = "bad-payload"

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message

    @classmethod
    def retry(cls, message) -> "Failure":
        """Worth retrying: the host retries with backoff while the task has
        retries left."""
        return Failure(Failure.RETRY, str(message))

    @classmethod
    def give_up(cls, message) -> "Failure":
        """No retry can help: the host archives the task now."""
        return Failure(Failure.GIVE_UP, str(message))

    @classmethod
    def bad_payload(cls, message) -> "Failure":
        """The payload cannot be handled: archived now as `bad-payload`."""
        return Failure(Failure.BAD_PAYLOAD, str(message))

    def __repr__(self):
        return f"Failure.{self.kind.replace('-', '_')}({self.message!r})"


class CapabilityError(Failure):
    """A capability call the host refused or could not carry out (not
    granted, over a cap, Redis unavailable). Uncaught, it fails the attempt
    as a retry, like ``?`` on a `CapabilityError` in the Rust SDK."""

    def __init__(self, message: str):
        super().__init__(Failure.RETRY, message)
