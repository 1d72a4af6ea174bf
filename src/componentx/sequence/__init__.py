"""Sequence models in PyTorch: the model zoo, windows as batches, the training loop and its
checkpoints, inference, pre-training, augmentation and explanations."""
