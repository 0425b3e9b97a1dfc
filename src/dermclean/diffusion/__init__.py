"""The diffusion machinery the methods share: the UNet, schedulers (and the DDIM grid), tiles, the
training loop and the dihedral augmentations."""
