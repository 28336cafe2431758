"""Whether the reader runs: the choices a face offers, and the environment variable that sets the default.

Apart from ``qa.reader.model`` so that a face can offer them without importing the reader itself.
"""

from __future__ import annotations

READER_ENV_VAR = "QA_READER"
READER_CHOICES = ("on", "off")
