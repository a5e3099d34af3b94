"""Deployment: target devices, bundles, verification and the model registry."""
