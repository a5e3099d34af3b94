"""detforge: from labelled images to a validated, optimised object detector.

The public API is listed in ``__all__``; importing detforge never imports torch.
"""

from detforge.core import (
    ClassMap,
    ConfigError,
    DatasetError,
    Detections,
    DetforgeError,
)
from detforge.data import Dataset, read_dataset, write_dataset

__version__ = "0.1.0"

__all__ = [
    "ClassMap",
    "ConfigError",
    "DatasetError",
    "Dataset",
    "DetforgeError",
    "Detections",
    "__version__",
    "read_dataset",
    "write_dataset",
]
