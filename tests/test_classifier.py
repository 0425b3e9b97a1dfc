"""Classifier: shapes, model folders, training, thresholds and the ``classify`` contract."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from dermclean.classifier.augment import augmenter
from dermclean.classifier.augment import geometric as augment
from dermclean.classifier.fit import auxiliary_targets, fit_classifier
from dermclean.classifier.metrics import OperatingThreshold, auroc, fit_operating_threshold
from dermclean.classifier.model import ClassifierConfig, build_classifier
from dermclean.classifier.predict import load_classifier, run_classify_dir, save_classifier
from dermclean.classifier.train import LabelledImages, predict_proba, train_classifier
from dermclean.constants import ARTIFACT_FLAGS, CLEAN_COMMAND
from dermclean.data.images import load_rgb, save_png, shades_of_gray, to_tensor
from dermclean.data.manifest import write_manifest
from dermclean.errors import DataError
from dermclean.io import atomic_path
from dermclean.tracking import ModelNotFound


def tiny_config(**kw) -> ClassifierConfig:
    return ClassifierConfig(**{"arch": "resnet10", "width": 4, "image_size": 16, **kw})


def separable(n: int, seed: int, size: int = 16) -> LabelledImages:
    """Melanoma images are reddish, benign ones bluish (plus noise): a signal any CNN learns."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = 0.3 * torch.randn(n, 3, size, size, generator=g)
    x[:, 0] += torch.where(y == 1, 0.6, -0.6)[:, None, None]
    x[:, 2] -= torch.where(y == 1, 0.6, -0.6)[:, None, None]
    return LabelledImages(images=x.clamp(-1, 1), melanoma=y.numpy())


@pytest.mark.parametrize("arch,width,size", [("resnet18", 8, 32), ("resnet10", 4, 16)])
def test_forward_shapes(arch, width, size):
    model = build_classifier(ClassifierConfig(arch=arch, width=width, image_size=size))
    assert model(torch.zeros(3, 3, size, size)).shape == (3,)
    wide = build_classifier(ClassifierConfig(arch=arch, width=width, image_size=size, num_classes=2))
    assert wide(torch.zeros(2, 3, size, size)).shape == (2, 2)


def test_width_64_is_torchvision_resnet18():
    import torchvision

    ours = build_classifier(ClassifierConfig(width=64))
    ref = torchvision.models.resnet18(weights=None, num_classes=1)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}


def test_unknown_arch_refused():
    with pytest.raises(ValueError, match="resnet18"):
        ClassifierConfig(arch="vgg")


def test_model_folder_round_trip(tmp_path):
    cfg = tiny_config()
    model = build_classifier(cfg).eval()
    thr = OperatingThreshold(threshold=0.42, method="youden", sensitivity=0.8, specificity=0.7, n_val=10)
    save_classifier(tmp_path / "m", module=model, config=cfg, threshold=thr, meta={"variant": "raw"})
    loaded = load_classifier(tmp_path / "m", device="cpu")
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(loaded.module(x), model(x))
    assert loaded.threshold == thr and loaded.config == cfg and loaded.meta == {"variant": "raw"}


def test_init_weights_loaded_from_local_file(tmp_path):
    source = build_classifier(tiny_config())
    torch.save(source.state_dict(), tmp_path / "w.pt")
    model = build_classifier(tiny_config(init_weights=str(tmp_path / "w.pt")), load_init=True)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), source.state_dict().values()))
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        build_classifier(tiny_config(init_weights=str(tmp_path / "missing.pt")), load_init=True)


def test_augment_keeps_every_pixel():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    out = augment(x, torch.Generator().manual_seed(0))
    for i in range(2):
        assert torch.equal(out[i].flatten().sort().values, x[i].flatten().sort().values)


def test_strong_augment_is_seeded_and_stays_in_range():
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    first = augmenter("strong")(x, torch.Generator().manual_seed(1))
    again = augmenter("strong")(x, torch.Generator().manual_seed(1))
    assert torch.equal(first, again) and first.shape == x.shape
    assert first.min() >= -1 and first.max() <= 1 and not torch.equal(first, x)
    with pytest.raises(ValueError, match="expected one of geometric, strong"):
        augmenter("mixup")


def test_shades_of_gray_makes_a_tinted_image_grey():
    base = torch.rand(1, 1, 8, 8) * 0.5 + 0.25
    tinted = torch.cat([base * 1.0, base * 0.7, base * 0.5], dim=1)
    out = shades_of_gray(tinted)
    means = out.pow(6).mean(dim=(-2, -1)).pow(1 / 6)[0]
    assert torch.allclose(means, means.mean().expand(3), atol=1e-4)
    assert torch.allclose(shades_of_gray(base.expand(1, 3, 8, 8)), base.expand(1, 3, 8, 8), atol=1e-6)


def test_training_reduces_loss_on_separable_set():
    train, val = separable(32, 0), separable(16, 1)
    model, history = train_classifier(train, val, tiny_config(), epochs=3, batch_size=16, lr=0.01, seed=0,
                                      device="cpu", progress=False)
    losses = [e.train_loss for e in history.epochs]
    assert losses[-1] < losses[0]
    assert 1 <= history.best_epoch <= 3
    assert history.best_val_auroc == max(e.val_auroc for e in history.epochs)
    assert auroc(val.melanoma, predict_proba(model, val, batch_size=8, device="cpu")) > 0.9


def test_strong_recipe_trains_and_its_colour_constancy_is_saved(tmp_path):
    train, val = separable(32, 0), separable(16, 1)
    config = tiny_config(colour_constancy=True)
    model, history = train_classifier(train, val, config, epochs=3, batch_size=16, lr=0.01, seed=0, device="cpu",
                                      augment="strong", lr_schedule="onecycle", progress=False)
    assert history.epochs[-1].train_loss < history.epochs[0].train_loss
    with pytest.raises(ValueError, match="lr_schedule 'cyclic'"):
        train_classifier(train, val, config, epochs=1, batch_size=16, lr=0.01, seed=0, lr_schedule="cyclic")
    save_classifier(tmp_path / "clf", module=model, config=config, threshold=None)
    loaded = load_classifier(tmp_path / "clf", device="cpu")
    assert loaded.config.colour_constancy is True
    assert np.allclose(predict_proba(loaded.module, val, device="cpu"), predict_proba(model, val, device="cpu"))


@pytest.mark.parametrize("options", [{"mixup": 0.4}, {"ema_decay": 0.8}])
def test_mixup_and_weight_averaging_train_deterministically_and_change_the_model(options):
    train, val = separable(32, 0), separable(16, 1)
    kwargs = dict(epochs=4, batch_size=16, lr=0.01, seed=0, device="cpu", progress=False)
    plain, _ = train_classifier(train, val, tiny_config(), **kwargs)
    first, history = train_classifier(train, val, tiny_config(), **kwargs, **options)
    again, _ = train_classifier(train, val, tiny_config(), **kwargs, **options)
    p_first = predict_proba(first, val, device="cpu")
    assert np.array_equal(p_first, predict_proba(again, val, device="cpu"))
    assert not np.allclose(p_first, predict_proba(plain, val, device="cpu"))
    assert history.best_val_auroc > 0.9 and auroc(val.melanoma, p_first) == pytest.approx(history.best_val_auroc)


@pytest.mark.parametrize("options", [{"mixup": -0.1}, {"ema_decay": 1.0}, {"ema_decay": 0.0}])
def test_mixup_and_weight_averaging_refuse_values_out_of_range(options):
    with pytest.raises(ValueError, match="expected mixup >= 0 and ema_decay null or in"):
        train_classifier(separable(8, 0), separable(8, 1), tiny_config(), epochs=1, batch_size=8, lr=0.01, seed=0,
                         **options)


def test_auxiliary_diagnosis_head_trains_on_known_rows_and_predictions_read_melanoma_only(tmp_path):
    train, val = separable(32, 0), separable(16, 1)
    g = torch.Generator().manual_seed(2)
    aux = (torch.rand(32, 1, generator=g) < 0.3).float().numpy()
    aux[train.melanoma == 1] = 0.0
    aux[:4] = np.nan  # diagnosis unknown: left out of the auxiliary term
    aux[0] = 1.0 if train.melanoma[0] == 0 else 0.0
    train.images[aux[:, 0] == 1, 1] += 0.5  # the auxiliary class is greenish, something to learn
    config = tiny_config(auxiliary=["seborrheic_keratosis"])
    kwargs = dict(epochs=4, batch_size=16, lr=0.01, seed=0, device="cpu", progress=False)
    model, history = train_classifier(train, val, config, auxiliary=aux, **kwargs)
    again, _ = train_classifier(train, val, config, auxiliary=aux, **kwargs)
    light, _ = train_classifier(train, val, config, auxiliary=aux, auxiliary_weight=0.1, **kwargs)
    assert model.all_logits(val.images).shape == (16, 2) and model(val.images).shape == (16,)
    p = predict_proba(model, val, device="cpu")
    assert np.array_equal(p, predict_proba(again, val, device="cpu"))
    assert not np.allclose(p, predict_proba(light, val, device="cpu"))  # the term's weight acts on the model
    assert history.best_val_auroc > 0.9
    save_classifier(tmp_path / "clf", module=model, config=config, threshold=None)
    loaded = load_classifier(tmp_path / "clf", device="cpu")
    assert loaded.config.auxiliary == ["seborrheic_keratosis"]
    assert np.allclose(predict_proba(loaded.module, val, device="cpu"), p)


def test_auxiliary_head_refuses_bad_names_and_targets():
    with pytest.raises(ValueError, match="expected distinct names among"):
        tiny_config(auxiliary=["melanoma"])
    config = tiny_config(auxiliary=["nevus"])
    train, val = separable(8, 0), separable(8, 1)
    with pytest.raises(ValueError, match=r"expected targets of shape \(8, 1\)"):
        train_classifier(train, val, config, epochs=1, batch_size=8, lr=0.01, seed=0, progress=False)
    with pytest.raises(ValueError, match="expected both in every column"):
        train_classifier(train, val, config, epochs=1, batch_size=8, lr=0.01, seed=0, progress=False,
                         auxiliary=np.zeros((8, 1)))


def test_fit_refuses_an_auxiliary_diagnosis_the_train_split_lacks(tmp_path):
    rows, rng = [], np.random.default_rng(0)
    for split in ("train", "val"):
        for k in range(4):
            image_id = f"{split}{k}"
            save_png(tmp_path / f"{image_id}.png", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
            rows.append({"image_id": image_id, "image_path": f"{image_id}.png", "melanoma": k % 2,
                         "diagnosis": ["nevus", "melanoma"][k % 2], "split": split, "source": "test",
                         **dict.fromkeys(ARTIFACT_FLAGS)})
    manifest = tmp_path / "manifest.csv"
    write_manifest(pd.DataFrame(rows), manifest)
    section = {"epochs": 1, "batch_size": 4, "lr": 0.01}
    with pytest.raises(DataError, match="train split has 0 rows with that diagnosis and 4 without"):
        fit_classifier(manifest, tiny_config(auxiliary=["seborrheic_keratosis"]), section, seed=0,
                       device=torch.device("cpu"), progress=False)


def test_auxiliary_targets_from_manifest_rows():
    rows = pd.DataFrame({"diagnosis": pd.array(["nevus", "seborrheic_keratosis", None, None, "melanoma"],
                                               dtype="string"),
                         "melanoma": pd.array([0, 0, 0, 1, 1], dtype="Int8")})
    t = auxiliary_targets(rows, ["seborrheic_keratosis", "nevus"])
    expected = np.array([[0, 1], [1, 0], [np.nan, np.nan], [0, 0], [0, 0]], dtype=np.float32)
    assert np.array_equal(t, expected, equal_nan=True)
    assert auxiliary_targets(rows, []) is None


def test_auroc_hand_worked():
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    assert auroc(y, p) == pytest.approx(0.75)  # 3 of 4 (malignant, benign) pairs ranked right
    assert auroc(y, np.full(4, 0.5)) == pytest.approx(0.5)  # ties count one half
    assert np.isnan(auroc(np.zeros(3), np.arange(3)))


def test_operating_threshold_hand_worked():
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    # thresholds 0.8 / 0.4 / 0.35 / 0.1 give J = 0.5 / 0 / 0.5 / 0; ties go to the higher threshold
    youden = fit_operating_threshold(p, y)
    assert (youden.threshold, youden.sensitivity, youden.specificity) == (0.8, 0.5, 1.0)
    sens = fit_operating_threshold(p, y, method="sensitivity", target_sensitivity=0.9)
    assert (sens.threshold, sens.sensitivity, sens.specificity) == (0.35, 1.0, 0.5)
    with pytest.raises(ValueError, match="both"):
        fit_operating_threshold(p, np.zeros(4))


@pytest.fixture()
def image_dir(tmp_path):
    folder = tmp_path / "images"
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.jpg", "c.PNG"):
        arr = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
        if name.endswith(".jpg"):
            from PIL import Image

            folder.mkdir(exist_ok=True)
            Image.fromarray(arr).save(folder / name)
        else:
            save_png(folder / name, arr)
    return folder


@pytest.fixture()
def model_dir(tmp_path):
    cfg = tiny_config()
    torch.manual_seed(0)
    return save_classifier(tmp_path / "model", module=build_classifier(cfg), config=cfg, threshold=None)


def test_classify_dir_contract(image_dir, model_dir, tmp_path):
    out, skipped = run_classify_dir(image_dir, tmp_path / "out" / "p.csv", model=str(model_dir), device="cpu",
                                    batch_size=2)
    assert skipped == []
    df = pd.read_csv(out)
    assert list(df.columns) == ["image", "p_malignant"]
    assert list(df["image"]) == ["a.jpg", "b.png", "c.PNG"]
    assert df["p_malignant"].between(0, 1).all()
    clf = load_classifier(model_dir, device="cpu")
    expect = predict_proba(clf.module, torch.stack([to_tensor(load_rgb(image_dir / n), 16) for n in df["image"]]),
                           device="cpu")
    np.testing.assert_allclose(df["p_malignant"], expect, atol=1e-5)
    assert not [p for p in out.parent.iterdir() if p.name != "p.csv"]  # no temporary left behind


def test_classify_notes_a_cleaned_variant_given_images_clean_did_not_write(image_dir, tmp_path):
    cfg = tiny_config()
    torch.manual_seed(0)
    module = build_classifier(cfg)
    telea = save_classifier(tmp_path / "telea", module=module, config=cfg, threshold=None, meta={"variant": "telea"})
    raw = save_classifier(tmp_path / "raw", module=module, config=cfg, threshold=None, meta={"variant": "raw"})
    with atomic_path(tmp_path / "cleaned", owner=CLEAN_COMMAND) as build:  # stamped as `clean` stamps its output
        shutil.copytree(image_dir, build)
    dataset = tmp_path / "dataset"  # a pipeline's cleaned dataset: images/ beside a manifest with provenance
    shutil.copytree(image_dir, dataset / "images")
    (dataset / "manifest.csv").write_text("image_id,image_path,method\n")
    cases = [(telea, image_dir, 1), (telea, tmp_path / "cleaned", 0), (telea, dataset / "images", 0),
             (raw, image_dir, 0)]
    notes = []
    for k, (model, folder, expected) in enumerate(cases):
        notes.append([])
        run_classify_dir(folder, tmp_path / f"p{k}.csv", model=str(model), device="cpu", progress=False,
                         note=notes[-1].append)
        assert len(notes[-1]) == expected, (model, folder, notes[-1])
    assert "cleaned by telea" in notes[0][0] and str(image_dir) in notes[0][0]


def test_classify_dir_bad_model_and_bad_image(image_dir, model_dir, tmp_path):
    with pytest.raises(ModelNotFound, match="--model"):
        run_classify_dir(image_dir, tmp_path / "p.csv", model=str(tmp_path / "nowhere"))
    (image_dir / "d.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="d.png"):
        run_classify_dir(image_dir, tmp_path / "p.csv", model=str(model_dir), device="cpu")
    assert not (tmp_path / "p.csv").exists()
