"""Orchestration over both training and evaluation: scheduled retraining (champion/challenger)
and the ablation grid. It sits above `clamp.train` and `clamp.eval`, which never import it
or each other (docs/architecture.md)."""
