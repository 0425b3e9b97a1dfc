"""diffusion.augment: D4 elements are distinct, invertible, label-preserving; TTA averages over all 8."""

from __future__ import annotations

import pytest
import torch

from dermclean.diffusion.augment import (DIHEDRAL_ORDER, dihedral, dihedral_map_mean, dihedral_mean, random_dihedral,
                                         undo_dihedral)


def test_eight_distinct_elements_and_identity():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    images = [dihedral(x, k) for k in range(DIHEDRAL_ORDER)]
    assert torch.equal(images[0], x)
    assert len({tuple(im.flatten().tolist()) for im in images}) == DIHEDRAL_ORDER
    for im in images:  # a permutation of the pixels
        assert sorted(im.flatten().tolist()) == sorted(x.flatten().tolist())


def test_quarter_turn_and_mirror():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert dihedral(x, 1).tolist() == [[2.0, 4.0], [1.0, 3.0]]  # counter-clockwise (torch.rot90)
    assert dihedral(x, 4).tolist() == [[2.0, 1.0], [4.0, 3.0]]  # mirror left-right


def test_bad_element_and_non_square_turn_are_refused():
    with pytest.raises(ValueError, match="expected 0..7"):
        dihedral(torch.zeros(1, 3, 4, 4), 8)
    with pytest.raises(ValueError, match="non-square"):
        dihedral(torch.zeros(1, 3, 4, 6), 1)
    assert dihedral(torch.zeros(1, 3, 4, 6), 2).shape == (1, 3, 4, 6)


def test_random_dihedral_is_per_sample_seeded_and_shape_preserving():
    x = torch.randn(32, 3, 8, 8)
    a = random_dihedral(x, torch.Generator().manual_seed(0))
    b = random_dihedral(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    matched = [next(k for k in range(DIHEDRAL_ORDER) if torch.equal(a[i], dihedral(x[i], k))) for i in range(32)]
    assert len(set(matched)) > 1  # samples get different elements
    assert torch.equal(x, x.clone())  # input untouched


def test_dihedral_mean_of_orientation_dependent_score():
    x = torch.zeros(1, 1, 4, 4)
    x[..., 0, 0] = 1.0  # one bright corner pixel
    top_left = lambda im: im[:, 0, 0, 0]  # noqa: E731 - depends on orientation
    assert top_left(x).item() == 1.0
    # the corner visits each of the 4 corners twice over D4, so it is at the top left in 2 of 8
    assert dihedral_mean(top_left, x).item() == pytest.approx(2 / 8)


def test_undo_dihedral_inverts_every_element_and_the_map_mean_is_equivariant():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    for k in range(DIHEDRAL_ORDER):
        assert torch.equal(undo_dihedral(dihedral(x, k), k), x), k

    def fn(v):  # a map that depends on orientation: the first channel plus a left-to-right ramp
        return v[:, 0] + torch.arange(4.0)
    mean = dihedral_map_mean(fn, x)
    for k in range(DIHEDRAL_ORDER):
        assert torch.allclose(dihedral_map_mean(fn, dihedral(x, k)), dihedral(mean, k)), k
    assert torch.allclose(dihedral_map_mean(fn, x, (0,)), fn(x))
