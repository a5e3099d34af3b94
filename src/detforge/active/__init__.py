"""Active learning: choose what to label next, round-trip it through CVAT or Label Studio,
retrain, and measure whether the choice beats random.

Entry points:

* :func:`select` -- score an unlabelled pool with a model and write the picks with
  pre-annotations for CVAT and Label Studio;
* :func:`merge` -- read the corrected labels back and write a new dataset version,
  catalogued with its parent and the selection that produced it;
* :func:`simulate` -- on a labelled dataset, hide the labels and replay select -> label ->
  retrain rounds per strategy, to compare strategies against random.

The formulas are in :mod:`detforge.active.uncertainty` and :mod:`detforge.active.diversity`;
the strategies in :data:`STRATEGIES`. Importing this package does not import torch.

Example:
    >>> from detforge.active import select
    >>> result = select("best.onnx", "unlabelled/", budget=50, out="round1")  # doctest: +SKIP
"""

from detforge.active.labels import read_labelled
from detforge.active.merge import MergeResult, merge
from detforge.active.selection import Picked, SelectionResult, select
from detforge.active.simulate import SimulationResult, simulate
from detforge.active.strategies import STRATEGIES, Strategy, get_strategy, register_strategy
from detforge.active.uncertainty import (
    UNCERTAINTY_METHODS,
    box_uncertainty,
    disagreement,
    image_uncertainty,
)

__all__ = ["STRATEGIES", "UNCERTAINTY_METHODS", "MergeResult", "Picked", "SelectionResult",
           "SimulationResult", "Strategy", "box_uncertainty", "disagreement", "get_strategy",
           "image_uncertainty", "merge", "read_labelled", "register_strategy", "select",
           "simulate"]
