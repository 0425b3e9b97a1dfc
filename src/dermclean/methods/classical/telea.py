"""Classical inpainting baseline: Telea's fast marching method (Telea 2004) via ``cv2.inpaint``.

Works directly at the image's resolution; pixels outside the mask are copied from the input.
"""

from __future__ import annotations

import cv2
import numpy as np


def telea_inpaint(image: np.ndarray, mask: np.ndarray, *, radius: int = 3) -> np.ndarray:
    """Fill ``mask`` (bool ``H x W``) in ``image`` (uint8 ``H x W x 3``) -> uint8 ``H x W x 3``.

    ``radius`` is the neighbourhood (pixels) each filled pixel is estimated from. Outside the mask the
    output equals the input exactly.
    """
    image = np.asarray(image)
    mask = np.asarray(mask, dtype=bool)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"telea_inpaint: got {image.dtype} image of shape {image.shape}; expected uint8 HxWx3")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"telea_inpaint: mask shape {mask.shape} != image shape {image.shape[:2]}")
    if not mask.any():
        return image.copy()
    filled = cv2.inpaint(np.ascontiguousarray(image), mask.astype(np.uint8) * 255, float(radius), cv2.INPAINT_TELEA)
    return np.where(mask[..., None], filled, image)
