"""Imported once by the fuzzer's fork server (``multiprocessing`` forkserver preload).

Running each format's valid seed here imports every module the children need (formats,
validate, image hashing, YAML, XML) and checks that the seeds read cleanly, so each
forked child starts warm instead of importing them again.
"""

from detforge.data.fuzz.runner import warm_up
from detforge.data.fuzz.seeds import SEEDS

for _fmt in SEEDS:
    warm_up(_fmt)
