"""``library index --ray``: a library's analysis and detection on a Ray cluster.

The walk, the planner (which reads the index and hashes new files), the tagger and the
database writer stay on this machine; each photo's analysis
(:class:`~detforge.library.remote.RemoteStill`: EXIF, decode, quality, perceptual hash,
thumbnail) runs in a decode task, its letterboxed pixels go to the inference actors, and
the results come back in the planner's order into the same
:class:`~detforge.library.indexrun.LibrarySink` as a local run, so both store the same rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from detforge.scale.cluster import Cluster
from detforge.scale.schedule import InferencePool, run_on_cluster
from detforge.scale.stages import ModelSpec

if TYPE_CHECKING:
    from detforge.library.indexrun import IndexRun
    from detforge.runtime.pipeline import Tracker
    from detforge.runtime.sources import SourceItem

__all__ = ["index_on_cluster"]


def index_on_cluster(run: IndexRun, items: Iterator[SourceItem], *, address: str,
                     model: Path | None, device: str = "auto",
                     imgsz: tuple[int, int] | None = None, conf: float = 0.25,
                     batch: int | str = "auto", every_s: float = 1.0) -> None:
    """Analyse ``items`` (from :meth:`~detforge.library.indexrun.IndexRun.items`) on the
    cluster at ``address`` and store them through ``run``.

    Args:
        run: The index run (planner, writer, tagger, summary).
        items: Its work items, in planner order.
        address: Ray address (``local``: a cluster started for this call).
        model: The detector file, or None for the analysis alone.
        device: Where the actors run the detector.
        imgsz: Detector input size for dynamic-size models.
        conf: Detector confidence threshold.
        batch: Detector batch size per actor, or ``"auto"``.
        every_s: Seconds between sampled video frames (the tracker's frame rate).

    Raises:
        MissingExtraError: Ray is not installed.
        ClusterError: The cluster cannot be reached, or its workers failed repeatedly.
    """
    from detforge.library.indexrun import LibrarySink, VideoOnlyTracker

    with Cluster(address) as cluster:
        info = cluster.require()
        if model is None:
            stats = run_on_cluster(info, None, items, [LibrarySink(run, ())], progress=False)
        else:
            spec = ModelSpec(str(model.absolute()), device=device, imgsz=imgsz, conf=conf,
                             batch=batch)
            tracker: Tracker | None = None
            if "video" in run.phases:  # without Ultralytics, no track ids (as locally)
                tracker = VideoOnlyTracker(run, frame_rate=1.0 / every_s)
            with InferencePool(info, spec) as pool:
                stats = run_on_cluster(info, pool, items, [LibrarySink(run, pool.info.classes)],
                                       tracker=tracker, progress=False, fast_decode=True)
    run.summary.interrupted = stats.interrupted
