"""The reader: a small model trained here that reads a passage against the question (``model``, ``spans``)."""
