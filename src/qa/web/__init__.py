"""The web face: the Gradio chat app, the long-lived service behind it, its HTML and its logins."""

from qa.web.gradio_import import skip_stub_writing

# Every module of this package imports Gradio: its import is most of the app's start.
skip_stub_writing()
