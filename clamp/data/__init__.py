"""Dataset building: sources, cleaning, dedup and decontamination, the benchmark registry, build stages, shards."""
