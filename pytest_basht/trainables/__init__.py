"""What a trial trains: the trainable protocol, MNIST data and the feed-forward model."""
