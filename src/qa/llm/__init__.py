"""The user's own language model, reached through any OpenAI-compatible server (``client``).

Optional: with no model configured nothing here is used, and the ``openai`` package it
speaks through (the ``llm`` extra) is imported only when a model is.
"""
