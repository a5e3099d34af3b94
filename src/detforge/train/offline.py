"""Former home of the Ultralytics offline set-up, now :mod:`detforge.integrations.ultralytics`
(runtime and export use it too, and must not import ``train``). Kept so that existing
imports keep working."""

from detforge.integrations.ultralytics import (
    FONT_NAMES,
    default_config_dir,
    import_ultralytics,
    offline_environment,
)

__all__ = ["FONT_NAMES", "default_config_dir", "import_ultralytics", "offline_environment"]
