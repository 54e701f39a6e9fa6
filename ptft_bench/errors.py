"""Errors that mean "the user asked for something that cannot work" (exit status 2, one line)."""


class UserError(Exception):
    """Bad input: the message says what is wrong and how to fix it, in one line."""
