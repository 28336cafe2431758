"""Ingest: finding corpus files, decoding them, cleaning them into articles and splitting them into passages."""
