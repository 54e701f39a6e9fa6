"""Errors that mean "the user asked for something that cannot work" (exit status 2, one line)."""


class UserError(Exception):
    """Bad input: the message says what is wrong and how to fix it, in one line."""


def first_line(error: BaseException, limit: int = 500) -> str:
    """`TypeName: first line of the message`, for records and one-line reports of a failure."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {line}"[:limit]
