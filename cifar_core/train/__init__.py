"""Training: Keras models built from specs, input pipelines and augmentation, learning-rate
schedules and the training loop with its checkpoints. No store: results go to a Reporter."""
