"""The one exception type a user can cause; the CLI prints it as a single `Error:` line."""


class DseError(Exception):
    """A user-facing error: bad option, unknown space, malformed file, impossible budget."""
