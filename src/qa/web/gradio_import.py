"""Import Gradio without having it rewrite its own type stubs.

Each time Gradio is imported, every component class it defines (about forty) reads its own
module's source, parses it twice with ``ast`` and renders a template into a ``.pyi`` stub
beside it (``gradio.component_meta.create_or_modify_pyi``): type stubs for Gradio's own
developers, written into the installed package. That is 40% of ``import gradio`` (1.0 of 2.5 s
here, four imports each way) and so of the app's start, and nothing at run time reads them.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

# The module whose stub writer is replaced, and the writer's name in it.
COMPONENT_META = "gradio.component_meta"
STUB_WRITER = "create_or_modify_pyi"


def skip_stub_writing() -> None:
    """Have the next ``import gradio`` define its components without writing stubs.

    Does nothing if Gradio is already imported. A Gradio without the stub writer imports
    unchanged.
    """
    if COMPONENT_META in sys.modules or any(isinstance(finder, _StubSkipper) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _StubSkipper())


def _write_no_stub(component_class: type, class_name: str, events: Sequence[object]) -> None:
    """The stub writer's signature, writing nothing."""


class _StubSkipper(importlib.abc.MetaPathFinder):
    """Finds ``gradio.component_meta`` as Python would, then loads it with the writer replaced."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != COMPONENT_META:
            return None
        sys.meta_path.remove(self)  # once: the module is imported once
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _StubSkippingLoader(spec.loader)
        return spec


class _StubSkippingLoader(importlib.abc.Loader):
    """Runs the module as its own loader would, then replaces the stub writer before any component uses it."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        if callable(getattr(module, STUB_WRITER, None)):
            setattr(module, STUB_WRITER, _write_no_stub)
