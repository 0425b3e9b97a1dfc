"""Artifact renderer families: many whole renderers per outlier kind, holdable out one family at a time.

``FAMILIES[kind]`` names the families (``rulers``, ``ink``, ``stickers`` modules, one renderer each);
:func:`paint_family` / :func:`paint_pair` / :func:`paint_random_family` paint with exact masks and a
per-sample degradation stage (``degrade``); :func:`family_folds` partitions a kind's families for
leave-one-family-out evaluation.
"""

from dermclean.data.families.degrade import (NONE, DegradeConfig, Degradation, degrade_image, degrade_layers,
                                             sample_degradation)
from dermclean.data.families.paint import (FAMILIES, FamilyPainted, FamilyPaintedMany, PaintedPair, allowed_families,
                                           family_folds, family_names, fold_exclusion, paint_family, paint_pair,
                                           paint_random_family)

__all__ = ["FAMILIES", "NONE", "DegradeConfig", "Degradation", "FamilyPainted", "FamilyPaintedMany", "PaintedPair",
           "allowed_families", "degrade_image", "degrade_layers", "family_folds", "family_names", "fold_exclusion",
           "paint_family", "paint_pair", "paint_random_family", "sample_degradation"]
