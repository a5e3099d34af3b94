"""Set-up of third-party libraries that several stages use, kept out of any one stage.

* :mod:`detforge.integrations.ultralytics` -- Ultralytics imported offline (train, runtime
  and export all load models through it);
* :mod:`detforge.integrations.telemetry` -- every library's telemetry turned off before it
  is imported.
"""
