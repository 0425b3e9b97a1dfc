"""methods.guided.noisy_classifier: shapes, training on a separable toy set, guidance gradient, model folders."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from dermclean.diffusion.augment import dihedral
from dermclean.diffusion.train import DiffusionBatch
from dermclean.diffusion.unet import UNetConfig
from dermclean.methods.guided.noisy_classifier import (
    NoisyClassifier, NoisyClassifierConfig, class_probabilities, classifier_log_prob_grad, model_view,
)
from dermclean.methods.guided.noisy_classifier_train import (
    auroc_per_class, masked_bce, noisy_classifier_from_params, pos_weight_from_labels, predict_proba,
    scheduled_lr, train_noisy_classifier, training_noise,
)
from dermclean.modelio import load_model_dir, save_model_dir

CFG = NoisyClassifierConfig(sample_size=16, width=8, depth=2)


def make_model(seed: int = 0, dtype=torch.float32) -> NoisyClassifier:
    torch.manual_seed(seed)
    return NoisyClassifier(CFG).to(dtype)


def toy_batches(n_batches: int = 4, b: int = 8, seed: int = 0) -> list[DiffusionBatch]:
    """Channel k is bright where class k is present, dark where absent: linearly separable at low t."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        labels = (torch.rand(b, 3, generator=g) < 0.4).float()
        target = (labels * 1.6 - 0.8)[:, :, None, None] + 0.1 * torch.randn(b, 3, 16, 16, generator=g)
        out.append(DiffusionBatch(target=target.clamp(-1, 1), labels=labels))
    return out


def test_forward_shapes():
    model = make_model()
    x = torch.randn(2, 3, 16, 16)
    assert model(x, torch.tensor([0, 999])).shape == (2, 3)
    assert model(x, torch.tensor(5)).shape == (2, 3)
    with pytest.raises(ValueError, match=r"\(B,3,H,W\)"):
        model(torch.randn(2, 1, 16, 16), torch.tensor([0, 1]))


def test_pos_weight_and_masked_bce_hand_worked():
    labels = torch.tensor([[1.0, 0.0, float("nan")], [0.0, 0.0, 1.0], [0.0, float("nan"), 1.0],
                           [0.0, 0.0, 1.0]])
    assert pos_weight_from_labels(labels).tolist() == [3.0, 1.0, 1.0]  # 3 neg / 1 pos; no pos; no neg
    logits = torch.zeros(4, 3)
    assert masked_bce(logits, labels).item() == pytest.approx(math.log(2))
    # one known positive with logit 0 under pos_weight 3 weighs 3 * log 2
    one = torch.tensor([[1.0, float("nan"), float("nan")]])
    assert masked_bce(torch.zeros(1, 3), one, torch.tensor([3.0, 1.0, 1.0])).item() == pytest.approx(3 * math.log(2))


def test_training_reduces_bce_on_separable_toy_set(tmp_path):
    batches = toy_batches()
    probs0, labels = predict_proba(make_model(), batches, device="cpu", t=0)
    before = torch.nn.functional.binary_cross_entropy(probs0, labels).item()
    logs = []
    model = train_noisy_classifier(make_model(), batches, steps=60, lr=5e-3, device="cpu", seed=0,
                                   progress=False, checkpoint_dir=tmp_path, checkpoint_every=30,
                                   on_log=lambda s, m: logs.append(m["loss"]))
    probs, labels = predict_proba(model, batches, device="cpu", t=0)
    after = torch.nn.functional.binary_cross_entropy(probs, labels).item()
    assert after < 0.65 * before, (before, after)
    aurocs = auroc_per_class(probs, labels)
    assert len(aurocs) == 3 and sum(aurocs.values()) / 3 > 0.85, aurocs
    assert (tmp_path / "checkpoint.pt").is_file() and logs


def test_augmented_training_learns_and_checkpoints_separately(tmp_path):
    batches = toy_batches()
    model = train_noisy_classifier(make_model(), batches, steps=60, lr=5e-3, device="cpu", seed=0, progress=False,
                                   checkpoint_dir=tmp_path, checkpoint_every=30, augment=True)
    probs, labels = predict_proba(model, batches, device="cpu", t=0, tta=True)
    assert sum(auroc_per_class(probs, labels).values()) / 3 > 0.85
    # a checkpoint written with augmentation is not resumed by a run without it
    with pytest.raises(ValueError, match="(?i)fingerprint|different"):
        train_noisy_classifier(make_model(), batches, steps=90, lr=5e-3, device="cpu", seed=0, progress=False,
                               checkpoint_dir=tmp_path, checkpoint_every=30)


def test_class_probabilities_tta_is_the_mean_over_d4():
    model = make_model(seed=2).eval()
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    plain = class_probabilities(model, x, t=5)
    with torch.no_grad():
        expected = torch.stack([torch.sigmoid(model(dihedral(x, k), torch.full((3,), 5))) for k in range(8)]).mean(0)
    assert torch.allclose(class_probabilities(model, x, t=5, tta=True), expected, atol=1e-6)
    assert not torch.allclose(plain, expected)  # the untrained model is orientation-dependent
    assert torch.allclose(plain, torch.sigmoid(model(x, torch.full((3,), 5))).detach(), atol=1e-6)


def test_input_scale_classifies_more_pixels_and_guides_at_model_resolution(tmp_path):
    cfg = NoisyClassifierConfig(sample_size=16, width=8, depth=2, input_scale=2)
    assert cfg.input_size == 32
    torch.manual_seed(0)
    model = NoisyClassifier(cfg).eval()
    x16 = torch.rand(2, 3, 16, 16) * 2 - 1
    up = torch.nn.functional.interpolate(x16, scale_factor=2, mode="nearest")
    t = torch.tensor([0, 300])
    with torch.no_grad():
        assert torch.allclose(model(x16, t), model(up, t), atol=1e-6)  # model resolution = nearest upsampled
    grad = classifier_log_prob_grad(model, x16, t, torch.zeros(2, 3))
    assert grad.shape == x16.shape and grad.abs().sum() > 0  # guidance gradient at the model's resolution

    # toy batches at 32 px: trains; the wrong size is refused with the sizes named
    batches = [DiffusionBatch(target=torch.nn.functional.interpolate(b.target, scale_factor=2), labels=b.labels)
               for b in toy_batches()]
    trained = train_noisy_classifier(NoisyClassifier(cfg), batches, steps=60, lr=5e-3, device="cpu", seed=0,
                                     progress=False, checkpoint_dir=tmp_path, checkpoint_every=30, augment=True)
    probs, labels = predict_proba(trained, batches, device="cpu", t=0)
    assert sum(auroc_per_class(probs, labels).values()) / 3 > 0.85
    with pytest.raises(ValueError, match="16 px.*32 px"):
        train_noisy_classifier(NoisyClassifier(cfg), toy_batches(), steps=2, lr=5e-3, device="cpu", progress=False)


def test_model_view_and_training_noise_live_on_the_model_grid():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    view = model_view(x, 2)
    assert view[0, 0, :2, :2].eq(x[0, 0, :2, :2].mean()).all() and view.shape == x.shape
    assert torch.equal(model_view(x, 1), x)
    eps = training_noise(torch.Size((64, 3, 8, 8)), 2, torch.Generator().manual_seed(0))
    assert torch.equal(eps[..., ::2, ::2].repeat_interleave(2, -1).repeat_interleave(2, -2), eps)
    assert 0.9 < float(eps.std()) < 1.1  # still unit variance per pixel


def test_auroc_per_class_skips_classes_without_both_outcomes():
    probs = torch.tensor([[0.9, 0.2, 0.5], [0.1, 0.4, 0.5], [0.6, 0.3, 0.5]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, float("nan"), 1.0]])
    assert auroc_per_class(probs, labels) == {"ruler": pytest.approx(1.0)}
    labels2 = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert auroc_per_class(probs, labels2)["ink"] == pytest.approx(1.0)
    assert auroc_per_class(probs, labels2)["ruler"] == pytest.approx(1.0)  # 0.9, 0.6 > 0.1


def test_log_prob_grad_matches_finite_differences():
    model = make_model(dtype=torch.float64).eval()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 16, 16, generator=g, dtype=torch.float64)
    t = torch.tensor([10, 500])
    target = torch.tensor([[0.0, 0.0, 0.0], [1.0, float("nan"), 0.0]], dtype=torch.float64)

    def log_p(xx: torch.Tensor) -> float:
        with torch.no_grad():
            logits = model(xx, t)
        y, known = torch.nan_to_num(target), ~torch.isnan(target)
        lp = y * torch.nn.functional.logsigmoid(logits) + (1 - y) * torch.nn.functional.logsigmoid(-logits)
        return (lp * known).sum().item()

    with torch.no_grad():  # the helper must enable gradients itself
        grad = classifier_log_prob_grad(model, x, t, target, scale=2.0)
    assert grad.shape == x.shape
    h = 1e-6
    for _ in range(3):
        v = torch.randn(x.shape, generator=g, dtype=torch.float64)
        fd = (log_p(x + h * v) - log_p(x - h * v)) / (2 * h)
        assert (grad * v).sum().item() == pytest.approx(2.0 * fd, rel=1e-5)
    # per-sample: perturbing sample 1 only changes sample 1's term. One pixel's derivative is small
    # (~1e-5), so a larger step keeps the difference quotient's rounding error (~1e-16 |log p| / h) well
    # below the tolerance on any BLAS; the O(h^2) truncation error stays far smaller still.
    e = torch.zeros_like(x)
    e[1, 2, 5, 7] = 1.0
    he = 1e-4
    fd = (log_p(x + he * e) - log_p(x - he * e)) / (2 * he)
    assert grad[1, 2, 5, 7].item() == pytest.approx(2.0 * fd, rel=1e-5)


def test_model_folder_round_trip(tmp_path):
    model = make_model(seed=4).eval()
    save_model_dir(tmp_path / "nc", kind="noisy_classifier", config=CFG, module=model)
    loaded, config, _ = load_model_dir(tmp_path / "nc", expect_kind="noisy_classifier")
    assert config == CFG
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([3, 700])
    with torch.no_grad():
        assert torch.equal(model(x, t), loaded(x, t))


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_t_zero_fraction_shows_that_share_of_samples_clean(fraction):
    model = make_model()
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(torch.as_tensor(args[1]).clone()))
    train_noisy_classifier(model, toy_batches(n_batches=4, b=16), steps=16, lr=1e-3, device="cpu", seed=0,
                           progress=False, t_zero_fraction=fraction)
    zero = (torch.cat(seen) == 0).float().mean().item()
    if fraction in (0.0, 1.0):
        assert zero == pytest.approx(fraction, abs=0.02)
    else:
        assert abs(zero - fraction) < 0.1, zero


def test_blocks_per_stage_deepen_the_classifier():
    shallow = NoisyClassifier(NoisyClassifierConfig(sample_size=16, width=8, depth=2))
    deep = NoisyClassifier(NoisyClassifierConfig(sample_size=16, width=8, depth=2, blocks=2))
    assert [len(s) for s in deep.stages] == [2, 2] and [len(s) for s in shallow.stages] == [1, 1]
    assert deep(torch.randn(2, 3, 16, 16), torch.tensor([0, 9])).shape == (2, 3)
    with pytest.raises(ValueError, match="blocks"):
        NoisyClassifierConfig(sample_size=16, blocks=0)


def test_cosine_schedule_hand_worked():
    assert scheduled_lr(1e-3, 7, 100, "constant") == 1e-3
    assert scheduled_lr(1.0, 0, 100, "cosine") == pytest.approx(0.2)  # warm-up: 5 steps
    assert scheduled_lr(1.0, 4, 100, "cosine") == pytest.approx(1.0)
    assert scheduled_lr(1.0, 5, 100, "cosine") == pytest.approx(1.0)
    assert scheduled_lr(1.0, 5 + 95 // 2, 100, "cosine") == pytest.approx(0.5, abs=0.02)
    assert scheduled_lr(1.0, 99, 100, "cosine") < 0.01


def test_batchnorm_classifier_trains_and_scores_each_sample_alone_in_eval(tmp_path):
    cfg = NoisyClassifierConfig(sample_size=16, width=8, depth=2, norm="batch")
    torch.manual_seed(0)
    model = train_noisy_classifier(NoisyClassifier(cfg), toy_batches(), steps=40, lr=5e-3, device="cpu", seed=0,
                                   progress=False, lr_schedule="cosine", t_zero_fraction=0.5)
    assert not model.training
    probs, labels = predict_proba(model, toy_batches(), device="cpu", t=0)
    assert sum(auroc_per_class(probs, labels).values()) / 3 > 0.85
    x = toy_batches()[0].target
    t = torch.zeros(len(x), dtype=torch.long)
    grads = classifier_log_prob_grad(model, x, t, torch.zeros(len(x), 3))
    alone = classifier_log_prob_grad(model, x[:1], t[:1], torch.zeros(1, 3))
    assert torch.allclose(grads[:1], alone, atol=1e-5)
    with pytest.raises(ValueError, match="norm"):
        NoisyClassifierConfig(sample_size=16, norm="layer")



def test_resnet_arch_is_torchvisions_layout_conditioned_on_t_and_learns(tmp_path):
    cfg = NoisyClassifierConfig(sample_size=16, width=8, depth=4, blocks=2, norm="batch", arch="resnet")
    torch.manual_seed(0)
    model = NoisyClassifier(cfg)
    assert [len(stage) for stage in model.stages] == [2, 2, 2, 2]  # ResNet-18: BasicBlocks, strided stages
    assert isinstance(model.stem[-1], torch.nn.MaxPool2d)
    model = train_noisy_classifier(model, toy_batches(), steps=40, lr=5e-3, device="cpu", seed=0, progress=False,
                                   lr_schedule="cosine", t_zero_fraction=0.5)
    probs, labels = predict_proba(model, toy_batches(), device="cpu", t=0)
    assert sum(auroc_per_class(probs, labels).values()) / 3 > 0.85
    x = toy_batches()[0].target
    with torch.no_grad():  # the timestep reaches the features
        assert not torch.allclose(model(x, torch.tensor(0)), model(x, torch.tensor(300)))
    t = torch.zeros(len(x), dtype=torch.long)
    grads = classifier_log_prob_grad(model, x, t, torch.zeros(len(x), 3))
    assert torch.allclose(grads[:1], classifier_log_prob_grad(model, x[:1], t[:1], torch.zeros(1, 3)), atol=1e-5)
    save_model_dir(tmp_path / "nc", kind="noisy_classifier", config=cfg, module=model)
    loaded, config, _ = load_model_dir(tmp_path / "nc", expect_kind="noisy_classifier")
    assert config.arch == "resnet"
    with torch.no_grad():
        assert torch.equal(model(x, t), loaded(x, t))
    for bad in ({"depth": 3}, {"blocks": 3}, {"norm": "group"}):
        with pytest.raises(ValueError, match="arch 'resnet'"):
            NoisyClassifierConfig(**{**dataclasses.asdict(cfg), **bad})
    with pytest.raises(ValueError, match="arch"):
        NoisyClassifierConfig(sample_size=16, arch="vit")


def test_params_section_splits_into_model_config_and_training_recipe():
    unet = UNetConfig(sample_size=32, num_classes=3, num_train_timesteps=500, beta_schedule="squaredcos_cap_v2")
    section = {"width": 8, "depth": 4, "blocks": 2, "norm": "batch", "arch": "resnet", "input_scale": 2,
               "steps": 40, "batch_size": 4, "lr": "1e-3", "max_timestep": 400, "t_zero_fraction": 0.5}
    config, recipe = noisy_classifier_from_params(section, unet=unet)
    assert (config.sample_size, config.input_size, config.num_train_timesteps) == (32, 64, 500)
    assert (config.arch, config.width, config.beta_schedule) == ("resnet", 8, "squaredcos_cap_v2")
    assert recipe.lr == pytest.approx(1e-3) and recipe.checkpoint_every == 5  # YAML's "1e-3"; steps // 8
    kwargs = recipe.train_kwargs()
    assert "batch_size" not in kwargs and kwargs["max_timestep"] == 400 and kwargs["lr_schedule"] == "constant"
    with pytest.raises(ValueError, match=r"here: unknown keys \['widht'\]"):
        noisy_classifier_from_params({**section, "widht": 8}, unet=unet, where="here")
    with pytest.raises(ValueError, match=r"missing keys \['lr'\]"):
        noisy_classifier_from_params({k: v for k, v in section.items() if k != "lr"}, unet=unet)
