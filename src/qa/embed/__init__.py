"""Embedding: the encoder that turns texts into unit vectors, and its fast OpenVINO runtime."""
