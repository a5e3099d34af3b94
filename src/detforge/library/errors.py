"""Errors of the library index, below :class:`~detforge.core.errors.DetforgeError`.

Hierarchy::

    DetforgeError
    └── LibraryError            the library index cannot do what was asked
        ├── LibraryDatabaseError  the --db file is not a library index, or is from a newer schema
        └── TaggerError           a tagger model cannot be loaded (not a model, missing files)
"""

from __future__ import annotations

from detforge.core.errors import DetforgeError

__all__ = ["LibraryDatabaseError", "LibraryError", "TaggerError"]


class LibraryError(DetforgeError):
    """The library index cannot do what was asked."""

    exit_code = 2


class LibraryDatabaseError(LibraryError):
    """The database file is not a library index, is damaged, or is from a newer schema."""


class TaggerError(LibraryError):
    """A tagger model cannot be loaded or run."""
