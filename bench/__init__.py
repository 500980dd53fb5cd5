"""Benchmarks of the orchestrator's core (``make bench`` -> bench/RESULTS.md). See bench/run.py."""
