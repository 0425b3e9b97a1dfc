"""Evidence of shortcut learning, and of its reduction by cleaning (docs/method.md, "Measuring honestly").

- :mod:`.trap`: Bissoto et al. trap sets (painted with a held-out renderer style);
- :mod:`.counterfactual`: Winkler et al. / Nauta et al. insertion with a same-shape skin control;
- :mod:`.subgroups`: AUROC with and without each artifact (human labels);
- :mod:`.stats`: paired bootstrap over test images, combined across seeds;
- :mod:`.attribution`: Grad-CAM share inside artifact masks;
- :mod:`.evidently_report`: the Evidently artifact-vs-clean report defined in monitoring/evidently/;
- :mod:`.evaluate`: all of it for a set of classifiers on the same images.
"""
