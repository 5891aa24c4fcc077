"""Evaluation: benchmark loaders, held-out tasks, zero-shot classification, semantic search, linear probe,
retrieval probes, bootstrap intervals and the quality report."""
