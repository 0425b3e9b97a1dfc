"""Detection: find and localise rulers, ink and stickers (Wolleb et al. 2022 guided DDIM anomaly maps).

- the anomaly maps come from :mod:`dermclean.methods` (guided DDIM, the image-conditioned model);
- :mod:`~dermclean.detection.detector`: the detector (``Detector``: maps, scores, masks);
  :mod:`~dermclean.detection.storage`: its bundle folder (``build_detector``, ``load_detector``,
  ``save_detector``, ``predict_paths``); :mod:`~dermclean.detection.threshold`: ``Threshold``;
- :mod:`~dermclean.detection.contract`: ``run_detect_dir`` (the ``dermclean detect`` contract);
- :mod:`~dermclean.detection.classical`: the rule-based baseline as a detector;
- :mod:`~dermclean.detection.metrics`, :mod:`~dermclean.detection.evaluate`: honest evaluation;
- :mod:`~dermclean.detection.bench`: speed next to the Wolleb reference configuration.
"""

from dermclean.detection.config import DetectionConfig
from dermclean.detection.contract import DEFAULT_MODEL, run_detect_dir
from dermclean.detection.detector import Detection, Detector, NotADetectorError
from dermclean.detection.storage import build_detector, load_detector, predict_paths, save_detector
from dermclean.detection.threshold import Threshold

__all__ = [
    "DEFAULT_MODEL",
    "Detection",
    "DetectionConfig",
    "Detector",
    "NotADetectorError",
    "Threshold",
    "build_detector",
    "load_detector",
    "predict_paths",
    "run_detect_dir",
    "save_detector",
]
