"""The base of every error a user can fix; the CLI shows it as one line."""


class AttireError(ValueError):
    """A problem in the user's input; the message says what to fix and where."""
