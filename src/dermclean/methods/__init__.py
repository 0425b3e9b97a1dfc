"""Methods: one package per way of finding or removing artifacts; detection and removal consume them.

- :mod:`~dermclean.methods.guided`: Wolleb et al. 2022 (noise-aware classifier, DDIM encode / guided
  decode anomaly maps with the class-conditional UNet) and RePaint (Lugmayr et al. 2022) fill with it;
- :mod:`~dermclean.methods.imagecond`: Baugh et al. 2024, the image-conditioned model (training pairs,
  training, restoration, difference-map anomaly map);
- :mod:`~dermclean.methods.classical`: colour / morphology rules and Telea's inpainting, the baselines.

The diffusion machinery the diffusion methods share (UNet, schedulers, tiles, training loop,
augmentations) is :mod:`dermclean.diffusion`.
"""
