"""Benchmarks against a baseline measured in the same run (``pipeline bench ...``)."""
