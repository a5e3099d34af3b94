"""Photo and video library analysis: a resumable, searchable SQLite index.

Example:
    >>> from detforge.library import index_library, open_store, search, SearchQuery
    >>> index_library("Photos", db="photos.sqlite", model="yolo11n.onnx")  # doctest: +SKIP
    >>> con = open_store("photos.sqlite", readonly=True)  # doctest: +SKIP
    >>> search(con, SearchQuery(text="dog 2024 sharp")).records  # doctest: +SKIP
"""

from detforge.library.detail import file_detail
from detforge.library.duplicates import DuplicateGroup, find_duplicates
from detforge.library.errors import LibraryDatabaseError, LibraryError, TaggerError
from detforge.library.indexer import IndexSummary, index_library, parse_phases
from detforge.library.search import SearchQuery, SearchResult, parse_query, search
from detforge.library.stats import library_stats
from detforge.library.store import SCHEMA_VERSION, open_store
from detforge.library.taggers import TAGGERS, Tagger, load_tagger, read_vocabulary

__all__ = [
    "SCHEMA_VERSION",
    "TAGGERS",
    "DuplicateGroup",
    "IndexSummary",
    "LibraryDatabaseError",
    "LibraryError",
    "SearchQuery",
    "SearchResult",
    "Tagger",
    "TaggerError",
    "file_detail",
    "find_duplicates",
    "index_library",
    "library_stats",
    "load_tagger",
    "open_store",
    "parse_phases",
    "parse_query",
    "read_vocabulary",
    "search",
]
