"""Diffusion models: the conditional UNet, the noise-aware classifier, schedulers and training."""
