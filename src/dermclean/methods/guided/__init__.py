"""The guided method (Wolleb et al., "Diffusion Models for Medical Anomaly Detection", MICCAI 2022).

- :mod:`.noisy_classifier`: the noise-aware classifier (classifier guidance, per-type scores);
  :mod:`.noisy_classifier_train`: its training and evaluation; the class-conditional UNet itself is
  :class:`~dermclean.diffusion.unet.DermUNet`;
- :mod:`.anomaly`: DDIM encode to L, decode guided towards "clean", difference maps;
- :mod:`.repaint`: RePaint (Lugmayr et al. 2022) fill with the same UNet conditioned on "clean".
"""
