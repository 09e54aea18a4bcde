"""Energy meters, the background sampler and attribution of energy to spans."""
