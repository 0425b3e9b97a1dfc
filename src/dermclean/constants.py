"""Names shared by every stage: artifact flags, outlier classes, splits."""

ARTIFACT_FLAGS: tuple[str, ...] = ("ruler", "ink", "patches", "hair", "dark_corner", "gel_bubble", "gel_border")
"""The seven human artifact labels of Bissoto et al. 2020, in manifest column order."""

OUTLIER_CLASSES: tuple[str, ...] = ("ruler", "ink", "patches")
"""The three kinds of outlier content the project detects and removes (the model's condition)."""

ACQUISITION_EFFECTS: tuple[str, ...] = tuple(f for f in ARTIFACT_FLAGS if f not in OUTLIER_CLASSES)
"""The manifest's acquisition-effect labels: content a detector must leave unflagged."""

SPLITS: tuple[str, ...] = ("train", "val", "test")
DIAGNOSES: tuple[str, ...] = ("nevus", "melanoma", "seborrheic_keratosis", "other")
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")

DEFAULT_DETECTOR = "models:/dermclean-detector@champion"
"""The registry detector ``detect`` and ``clean`` use without ``--model`` / ``--detector``."""

DEFAULT_CLASSIFIER = "models:/dermclean-classifier@champion"
"""The registry classifier ``classify`` uses without ``--model``: the one the promote stage chose to deploy
(the champion of the best cleaned variant that passed its gates, else the raw champion)."""

CLEAN_COMMAND = "clean"
"""The owner ``dermclean clean`` stamps its output folders with (``dermclean.io.OWNER_FILE``)."""
