"""Reproduce, explain and extend the S23DR 2026 learned wireframe baseline."""

__version__ = "0.1.0"
