"""The artifact segmenter: a convolutional UNet that maps an image to per-type artifact probabilities,
trained on the renderer families' painted pixels (full labels), untouched clean images (hard
negatives) and real images' human type labels (weak labels, a multiple-instance term).

- :mod:`.model`: the network, its config and the top-k pooling;
- :mod:`.batches`: the three sources and how a batch mixes them;
- :mod:`.data`: the training images from a manifest; :mod:`.train`: the loss and the training loop.
"""
