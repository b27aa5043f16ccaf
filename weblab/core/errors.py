"""Errors a user can act on: each says what is wrong and what to do."""


class WeblabError(Exception):
    """A failure with a one-line message meant for the user."""


class NotReady(WeblabError):
    """A service or component did not become ready within its bound."""
