"""Gradio imported through ``qa.web`` defines its components without parsing their source for stubs.

Each case runs in a fresh interpreter: an import happens once per process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def run_python(code: str, *, path: list[Path]) -> str:
    """Run ``code`` in a fresh interpreter with ``path`` first on its import path; its stdout."""
    search_path = ":".join(str(folder) for folder in path)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        check=False,
        text=True,
        env={"PYTHONPATH": search_path, "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# Counts the source parses made by Gradio's stub writer while Gradio is imported, then builds a
# page with the components the app uses, so that they are known to work without it.
COUNT_STUB_PARSES = """
    import ast, inspect
    parses = []
    real_parse = ast.parse
    def counting_parse(*args, **kwargs):
        parses.append(inspect.stack()[1].filename)
        return real_parse(*args, **kwargs)
    ast.parse = counting_parse
    {before}
    import gradio as gr
    ast.parse = real_parse
    print(sum(name.endswith("component_meta.py") for name in parses))
    with gr.Blocks() as page:
        box = gr.Textbox()
        chat = gr.Chatbot()
        box.submit(lambda text: [], inputs=box, outputs=chat)
    print(len(page.fns))
"""


@pytest.mark.parametrize(("before", "expected_parses"), [("import qa.web", "0"), ("", None)])
def test_gradio_imported_through_qa_web_parses_no_source_for_stubs(before: str, expected_parses: str | None) -> None:
    parses, handlers = run_python(COUNT_STUB_PARSES.format(before=before), path=[SRC]).split()
    if expected_parses is None:
        # Gradio alone: the stub writer parses each component's module (the count this saves).
        assert int(parses) > 20
    else:
        assert parses == expected_parses
    assert handlers == "1"


def test_gradio_imported_first_is_left_as_it_is() -> None:
    out = run_python(
        """
        import sys
        import gradio.component_meta as meta
        writer = meta.create_or_modify_pyi
        finders = list(sys.meta_path)
        import qa.web
        print(meta.create_or_modify_pyi is writer, sys.meta_path == finders)
        """,
        path=[SRC],
    )
    assert out.split() == ["True", "True"]


def test_a_gradio_without_the_stub_writer_imports_unchanged(tmp_path: Path) -> None:
    package = tmp_path / "gradio"
    package.mkdir()
    (package / "__init__.py").write_text("from gradio.component_meta import VALUE\n")
    (package / "component_meta.py").write_text("VALUE = 7\ncreate_or_modify_pyi = 'not a function'\n")
    out = run_python(
        """
        import sys
        from qa.web.gradio_import import skip_stub_writing
        skip_stub_writing()
        import gradio, gradio.component_meta as meta
        print(gradio.VALUE, meta.create_or_modify_pyi, any(type(f).__name__ == "_StubSkipper" for f in sys.meta_path))
        """,
        path=[tmp_path, SRC],
    )
    assert out.split() == ["7", "not", "a", "function", "False"]  # and the finder is gone
