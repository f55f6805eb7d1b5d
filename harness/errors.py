"""Errors a user can cause. The CLI prints them without a traceback and exits with 2."""


class HarnessError(Exception):
    """Bad input or an unusable environment: the message says what, where, and how to fix it."""

    exit_code = 2


class SpecError(HarnessError):
    """A version spec, matrix file or scenario parameter is invalid."""


class ImageError(HarnessError):
    """An image cannot be obtained, or is not what its spec promised."""


class EngineError(HarnessError):
    """The Docker engine or Compose is missing or not answering."""


class CellError(Exception):
    """A cell failed while running (not the user's input): the run records it and goes on."""
