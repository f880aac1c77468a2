"""Dagster objects only: thin wrappers over the library code."""
