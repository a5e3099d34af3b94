"""Errors of the cluster runs, below :class:`~detforge.core.errors.DetforgeError`.

Hierarchy::

    DetforgeError
    └── ClusterError     the Ray cluster cannot be reached, or a part of the work failed on
                         it more often than a retry can fix
"""

from __future__ import annotations

from detforge.core.errors import DetforgeError

__all__ = ["ClusterError"]


class ClusterError(DetforgeError):
    """The cluster is unreachable, or a chunk of work failed on every retry."""

    exit_code = 1
