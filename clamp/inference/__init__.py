"""Inference: load a model folder, read music files and uploads into ABC, embed music and
text, fill zero-shot prompts, and search an index of a built dataset. The command line,
evaluation and the service all use this layer; it knows nothing of them."""
