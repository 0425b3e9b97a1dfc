"""Methods: one package per way of finding or removing artifacts; detection and removal consume them.

- :mod:`~dermclean.methods.classical`: colour / morphology rules and Telea's inpainting, the baselines.

The diffusion machinery the diffusion methods share (UNet, schedulers, tiles, training loop,
augmentations) is :mod:`dermclean.diffusion`.
"""
