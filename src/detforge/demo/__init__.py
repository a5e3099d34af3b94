"""The main job: the whole chain on a generated dataset, on this machine."""

from detforge.demo.pipeline import DemoConfig, run_demo

__all__ = ["DemoConfig", "run_demo"]
