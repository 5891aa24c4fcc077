"""Models: the bar-patch music encoder, the MMM decoder, the text encoder and the joint CLaMP model."""
