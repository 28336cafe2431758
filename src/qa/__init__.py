"""qa: ask questions of a folder of articles, answered with cited passages."""

from __future__ import annotations

__version__ = "0.1.0"
