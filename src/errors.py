"""The one error type for a user's mistake; entry points print it as a single line."""


class UserError(Exception):
    """A mistake the user can fix: names the thing (file, flag, key) and what is wrong with it."""

    def __init__(self, thing: object, problem: str):
        self.thing = printable(thing)
        self.problem = problem
        super().__init__(f"{self.thing}: {problem}")


def printable(thing: object) -> str:
    """str(thing), with the bytes of a file name that are not UTF-8 shown as \\xNN escapes.

    Python decodes such bytes to lone surrogates, which any UTF-8 writer (a CSV, a strict stdout) refuses."""
    return str(thing).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def read_user_file(path) -> bytes:
    """The bytes of a file the user named, or a UserError that names it."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise UserError(path, "file not found") from None
    except OSError as e:
        raise UserError(path, f"cannot be read ({e.strerror})") from None
