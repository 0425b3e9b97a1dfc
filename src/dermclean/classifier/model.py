"""The diagnosis classifier: a torchvision ResNet trained from scratch (melanoma vs benign).

``arch="resnet18"`` is He et al. 2016's ResNet-18 layout (BasicBlock, ``[2, 2, 2, 2]``) and
``arch="resnet10"`` the same with one block per stage (``[1, 1, 1, 1]``). The stage widths are
``(w, 2w, 4w, 8w)`` with ``w = width``: ``width=64`` is exactly ``torchvision.models.resnet18``
(same module names, so a user's local ResNet-18 state_dict loads into it), smaller widths are the
same network, narrower, built from torchvision's own ``BasicBlock``. No pretrained weights are
downloaded; ``init_weights`` names a local state_dict file (loaded with ``weights_only=True``;
tensors whose shape differs, e.g. a 1000-class ``fc``, are left at their fresh initialisation).

Input ``(B, 3, S, S)`` in ``[-1, 1]`` with ``S = image_size``; output logits ``(B,)`` for
``num_classes=1`` (``sigmoid`` gives ``p_malignant``), else ``(B, num_classes)``. ``auxiliary`` names
other diagnoses (e.g. ``seborrheic_keratosis``) the network also learns to tell, one more logit each
on the same final layer (:meth:`DiagnosisResNet.all_logits`): a second task that asks the features
to tell benign lesions apart too; ``forward`` and so every prediction return the main logits only. With
``colour_constancy`` the network first normalises each image's illuminant (shades of grey, p = 6,
as in the ISIC challenge entries of Barata et al. 2015): dermoscopes differ in their light, and the
correction is part of the saved model, so ``classify`` applies it too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from dermclean import modelio
from dermclean.constants import DIAGNOSES
from dermclean.data.images import shades_of_gray

KIND = "classifier"
LAYOUTS: dict[str, list[int]] = {"resnet18": [2, 2, 2, 2], "resnet10": [1, 1, 1, 1]}


@dataclass(kw_only=True)
class ClassifierConfig:
    """Typed config saved in the model folder's ``config.json``."""

    arch: str = "resnet18"
    width: int = 16
    image_size: int = 64
    num_classes: int = 1
    init_weights: str | None = None
    colour_constancy: bool = False
    auxiliary: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.arch not in LAYOUTS:
            raise ValueError(f"classifier.arch {self.arch!r} is not supported; expected one of {sorted(LAYOUTS)}")
        if self.width < 1 or self.image_size < 8 or self.num_classes < 1:
            raise ValueError(f"classifier config {self}: expected width >= 1, image_size >= 8, num_classes >= 1")
        self.auxiliary = [str(name) for name in self.auxiliary]
        allowed = [d for d in DIAGNOSES if d != "melanoma"]
        if any(name not in allowed for name in self.auxiliary) or len(set(self.auxiliary)) < len(self.auxiliary):
            raise ValueError(f"classifier.auxiliary {self.auxiliary}: expected distinct names among {allowed}")


class DiagnosisResNet(ResNet):
    """torchvision ``ResNet`` with base width ``width`` instead of 64 (see module docstring)."""

    def __init__(self, config: ClassifierConfig) -> None:
        outputs = config.num_classes + len(config.auxiliary)
        super().__init__(BasicBlock, LAYOUTS[config.arch], num_classes=outputs)
        w = config.width
        if w != 64:  # rebuild the stages narrower with torchvision's own _make_layer
            self.inplanes = w
            self.conv1 = nn.Conv2d(3, w, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = self._norm_layer(w)
            layers = LAYOUTS[config.arch]
            self.layer1 = self._make_layer(BasicBlock, w, layers[0])
            self.layer2 = self._make_layer(BasicBlock, 2 * w, layers[1], stride=2)
            self.layer3 = self._make_layer(BasicBlock, 4 * w, layers[2], stride=2)
            self.layer4 = self._make_layer(BasicBlock, 8 * w, layers[3], stride=2)
            self.fc = nn.Linear(8 * w, outputs)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.config = config

    def all_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, 3, S, S)`` in ``[-1, 1]`` -> ``(B, num_classes + len(auxiliary))``: main, then auxiliary."""
        if self.config.colour_constancy:
            x = shades_of_gray((x + 1) / 2) * 2 - 1
        return super().forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, 3, S, S)`` in ``[-1, 1]`` -> logits ``(B,)`` (or ``(B, C)`` when ``C > 1``)."""
        logits = self.all_logits(x)[:, :self.config.num_classes]
        return logits[:, 0] if self.config.num_classes == 1 else logits


def load_init_weights(model: nn.Module, path: str | os.PathLike[str]) -> list[str]:
    """Load a local state_dict into ``model`` (``weights_only=True``); return the keys left fresh."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"classifier.init_weights {file} not found; expected a local state_dict (.pt) file")
    state = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{file}: expected a state_dict (a dict of tensors), got {type(state).__name__}")
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ValueError(f"{file}: no tensor matches the {model.config.arch} width {model.config.width} "
                         f"classifier by name and shape; expected a torchvision ResNet state_dict")
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))


def build_classifier(config: ClassifierConfig, *, load_init: bool = False) -> DiagnosisResNet:
    """A fresh classifier; with ``load_init`` and ``config.init_weights`` set, start from that file."""
    model = DiagnosisResNet(config)
    if load_init and config.init_weights:
        load_init_weights(model, config.init_weights)
    return model


modelio.register(KIND, ClassifierConfig, build_classifier)
