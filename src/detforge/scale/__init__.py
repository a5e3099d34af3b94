"""Past one machine: batch inference, library indexing and COCO evaluation on Ray.

Imported only when ``--ray`` is asked for; ``import detforge`` and a local ``predict`` never
import Ray. Without Ray installed every entry point raises
``MissingExtraError("pip install 'detforge[scale]'")``.

Design (docs/decisions/0045-ray-scale-out.md): Ray core tasks and actors driven from this
machine, not Ray Data. The driver reads the inputs (a folder, a list file, a library's
planner over its SQLite index) as the local pipeline does, sends chunks of items to decode
tasks on the cluster's CPUs, their letterboxed pixels to inference actors (one per GPU, or
two per CPU node) through the object store, and writes the results here in input order,
each chunk exactly once, retrying the chunks a dead worker held.

Example:
    >>> from detforge.scale import predict_on_cluster
    >>> stats = predict_on_cluster("model.onnx", "photos/", out="dets.jsonl")  # doctest: +SKIP
    >>> print(stats.format())  # doctest: +SKIP
"""

from detforge.scale.cluster import LOCAL_ENV, Cluster, ClusterInfo
from detforge.scale.errors import ClusterError
from detforge.scale.predict import predict_on_cluster
from detforge.scale.schedule import ClusterProgress, ClusterStats, InferencePool, run_on_cluster
from detforge.scale.stages import ModelSpec

__all__ = [
    "LOCAL_ENV",
    "Cluster",
    "ClusterError",
    "ClusterInfo",
    "ClusterProgress",
    "ClusterStats",
    "InferencePool",
    "ModelSpec",
    "predict_on_cluster",
    "run_on_cluster",
]
