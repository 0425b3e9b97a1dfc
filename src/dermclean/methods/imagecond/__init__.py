"""The image-conditioned method (Baugh et al., "Image-Conditioned Diffusion Models for Medical Anomaly
Detection", UNSURE 2024): the model restores the clean image given the corrupted one.

- :mod:`.model`: the UNet config, the condition (mask channel, Telea pre-fill) and the model check;
- :mod:`.pairs`: training pairs (clean images with painted artifacts, held-out styles) and batches;
- :mod:`.train`: training; :mod:`.sample`: DDIM restoration and the difference-map anomaly map.
"""
