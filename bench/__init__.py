"""Benchmarks: each prints figures against a baseline run in the same process."""
