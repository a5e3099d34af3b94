"""Runtime backends, imported on first use via :data:`detforge.runtime.backend.BACKENDS`."""
