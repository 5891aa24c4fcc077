"""Evaluation: benchmark loaders, zero-shot classification, semantic search, linear probe."""
