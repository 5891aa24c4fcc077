"""Training loops: masked-music pre-training and contrastive training."""
