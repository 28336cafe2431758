"""Evaluation: metrics, runs over labelled questions and BEIR benchmarks, and their reports."""
