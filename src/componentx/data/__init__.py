"""Data: the dataset layout and its readers, the synthetic fleet and small tasks, labels,
windows, specification codes and model inputs."""
