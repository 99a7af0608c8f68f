"""User-facing errors. The CLI prints any of these as one line and exits non-zero."""


class WmbenchError(Exception):
    """A problem the user can fix; its message says how."""


class UnknownNameError(WmbenchError, LookupError):
    """A defense, attack, dataset, architecture or profile name that is not registered."""

    def __str__(self) -> str:  # LookupError/KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class ConfigError(WmbenchError, ValueError):
    """A configuration value out of its allowed range, or an unknown configuration key."""


class DataError(WmbenchError):
    """A data set that cannot be found or read."""


class CardError(WmbenchError, ValueError):
    """A result card that does not follow the schema."""


def shorten(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters with a mark, for echoing user input back in one line."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def suggest(name: str, choices, *, n: int = 3, cutoff: float = 0.6) -> str:
    """``"did you mean a, b? "`` naming the registered names closest to a misspelt ``name``, or ``""``.

    The one "did you mean" of the project: every unknown-name message puts it before what to do next.
    """
    import difflib

    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=n, cutoff=cutoff)
    return f"did you mean {', '.join(close)}? " if close else ""
