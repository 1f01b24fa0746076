"""The one error type for a user's mistake; entry points print it as a single line."""


class UserError(Exception):
    """A mistake the user can fix: names the thing (file, flag, key) and what is wrong with it."""

    def __init__(self, thing: object, problem: str):
        self.thing = str(thing)
        self.problem = problem
        super().__init__(f"{self.thing}: {problem}")


def read_user_file(path) -> bytes:
    """The bytes of a file the user named, or a UserError that names it."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise UserError(path, "file not found") from None
    except OSError as e:
        raise UserError(path, f"cannot be read ({e.strerror})") from None
