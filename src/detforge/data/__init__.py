"""Datasets: the in-memory model, formats, validation, splitting, statistics, synthesis."""

from detforge.data.dataset import BoxTable, Dataset, ImageTable
from detforge.data.formats import FORMATS, detect_format, read_dataset, write_dataset

__all__ = ["FORMATS", "BoxTable", "Dataset", "ImageTable", "detect_format", "read_dataset",
           "write_dataset"]
