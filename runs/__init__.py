"""Orchestration: run folders and records, teacher training and caching, sweeps, summaries."""
