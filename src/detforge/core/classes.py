"""Class lists: names by contiguous index, with the original ids of the source format."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from detforge.core.errors import ConfigError

__all__ = ["ClassMap"]


@dataclass(frozen=True)
class ClassMap:
    """Class names indexed 0..K-1, remembering each class's id in the source format.

    COCO category ids are often not contiguous (1, 2, 5, 90...); detforge indexes
    classes 0..K-1 internally and keeps ``source_ids`` to write the original ids back.

    Example:
        >>> cm = ClassMap(("cat", "dog"), source_ids=(1, 5))
        >>> cm.index_of_source(5)
        1
    """

    names: tuple[str, ...]
    source_ids: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.source_ids:
            object.__setattr__(self, "source_ids", tuple(range(len(self.names))))
        if len(self.source_ids) != len(self.names):
            raise ConfigError(f"{len(self.names)} class names but {len(self.source_ids)} ids")
        if len(set(self.names)) != len(self.names):
            dupes = sorted({n for n in self.names if self.names.count(n) > 1})
            raise ConfigError(f"class names must be unique; repeated: {dupes}. Rename them.")

    @classmethod
    def from_names(cls, names: Sequence[str]) -> ClassMap:
        """Contiguous ids 0..K-1."""
        return cls(tuple(names))

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Index of ``name``; raises ConfigError naming the valid classes."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ConfigError(
                f"unknown class {name!r}; valid classes: {list(self.names)}") from None

    def index_of_source(self, source_id: int) -> int:
        """Index of the class whose source-format id is ``source_id`` (-1 if none)."""
        try:
            return self.source_ids.index(source_id)
        except ValueError:
            return -1
