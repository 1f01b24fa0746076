"""The one error type for a user's mistake; entry points print it as a single line."""


class UserError(Exception):
    """A mistake the user can fix: names the thing (file, flag, key) and what is wrong with it."""

    def __init__(self, thing: object, problem: str):
        self.thing = str(thing)
        self.problem = problem
        super().__init__(f"{self.thing}: {problem}")
