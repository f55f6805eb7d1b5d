"""Errors a user can cause. The CLI prints them without a traceback and exits with 2."""

from __future__ import annotations

from pathlib import Path


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


class ResultsError(HarnessError):
    """Results cannot be written (a full disk, a folder gone read-only, a run folder another
    harness process holds): the run stops, after tearing down whatever it had started.

    ``path`` is the file or folder concerned.
    """

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path

    @classmethod
    def writing(cls, path: Path, exc: OSError) -> ResultsError:
        """The error for an OSError met writing ``path`` (the file, or the folder it is in)."""
        where = Path(exc.filename) if isinstance(exc.filename, str) else path
        return cls(
            f"{where}: results cannot be written ({exc.strerror or exc}). Free space on the "
            "disk that holds it (or point HARNESS_RESULTS at a folder with room), then run "
            "again; the stack, if one was up, has been torn down.",
            where,
        )
