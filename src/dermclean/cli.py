"""The ``dermclean`` command line: a thin layer over the library (see ``dermclean --help``).

Every command calls the same library function that the DVC stages and Ray Tune trials call.
A user's mistake (a :class:`dermclean.errors.DermcleanError`) prints one line and exits with its
status (2 usage, 3 invalid input data); anything else is a bug and keeps its traceback (status 1).
Commands import the library inside their body so that ``dermclean --help`` stays fast.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from dermclean import __version__
from dermclean.constants import DEFAULT_CLASSIFIER, DEFAULT_DETECTOR
from dermclean.errors import EXIT_SKIPPED, DermcleanError

EXIT_CODES = ("Exit status: 0 done; 1 internal error (a bug: traceback printed); 2 usage error (option, path, "
              "output folder, model); 3 invalid input data (image, mask, labels row); 4 done, but some inputs "
              "were skipped (--on-error skip, see errors.csv).")

app = typer.Typer(
    name="dermclean",
    help="Find and remove shortcut artifacts (rulers, ink, stickers) in dermoscopic images with "
    "diffusion models, and measure shortcut learning. Research use only; not for clinical use.\n\n" + EXIT_CODES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
bench_app = typer.Typer(help="Benchmarks (speed figures for the docs), not tests.", no_args_is_help=True,
                        rich_markup_mode=None)
app.add_typer(bench_app, name="bench")


class Method(str, Enum):
    telea = "telea"
    imagecond = "imagecond"
    inpaint = "inpaint"


class OnError(str, Enum):
    stop = "stop"
    skip = "skip"


ImagesDir = Annotated[Path, typer.Argument(metavar="IMAGES_DIR", help="Folder of *.jpg/*.jpeg/*.png images (not recursive unless --recursive); only read.")]
Device = Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1 ... (default: CUDA if available).")]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Images per forward pass (default: from the model's config).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an earlier output of this same command (never anything else).")]
OnErrorOpt = Annotated[OnError, typer.Option("--on-error", help="stop: the first unusable image ends the run, nothing written. skip: leave it out, list it in errors.csv, exit 4.")]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="No progress bar.")]
Recursive = Annotated[bool, typer.Option("--recursive", help="Read subfolders too; outputs mirror them and an image's id is its path below IMAGES_DIR.")]
Address = Annotated[Optional[str], typer.Option("--address", help="Ray cluster to run on (default: RAY_ADDRESS; neither: this process); paths must be shared by every node.")]
Workers = Annotated[Optional[int], typer.Option("--workers", min=1, help="Ray actors, one model each (default: the cluster's CPUs, or GPUs with CUDA).")]


class MapFormat(str, Enum):
    npy = "npy"
    png = "png"
    none = "none"


def _user_errors(func):
    """A :class:`DermcleanError` becomes one red line on stderr and its exit status (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DermcleanError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            typer.secho("interrupted", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=130) from None

    return wrapper


def _report_skipped(skipped: list, where: Path) -> None:
    """Say how many inputs were skipped and exit 4 when any were."""
    if skipped:
        typer.secho(f"skipped {len(skipped)} unusable input(s); see {where}", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(code=EXIT_SKIPPED)


def _require_store(uri: str | None, default: str, **hint: str) -> None:
    """Fail at once, before the heavy imports, when a registry URI has no tracking store to resolve in."""
    text = uri if uri is not None else default
    if text.startswith(("models:/", "runs:/")):
        from dermclean.tracking.store import existing_store

        existing_store(text, **hint)


def _variant_model(model: str | None, variant: str | None) -> str | None:
    """``--variant V`` as the URI of that variant's champion classifier (refused beside ``--model``)."""
    if variant is None:
        return model
    from dermclean.errors import OptionError

    if model is not None:
        raise OptionError("--variant and --model both given; --variant picks a registry model, --model names one")
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", variant):
        raise OptionError(f"--variant {variant!r}; expected a variant name such as raw, telea or imagecond")
    return f"models:/dermclean-classifier-{variant}@champion"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dermclean {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more detail.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
@_user_errors
def detect(
    images_dir: ImagesDir,
    out: Annotated[Path, typer.Option("--out", help="New output folder: maps/, masks/, scores.csv, run.json [, errors.csv].")],
    model: Annotated[Optional[str], typer.Option("--model", help="MLflow model URI or local detector folder (default: models:/dermclean-detector@champion).")] = None,
    device: Device = None,
    batch_size: BatchSize = None,
    overwrite: Overwrite = False,
    on_error: OnErrorOpt = OnError.stop,
    no_progress: NoProgress = False,
    maps: Annotated[MapFormat, typer.Option("--maps", help="Anomaly maps as float32 .npy, 8-bit .png (range in run.json) or none.")] = MapFormat.npy,
    recursive: Recursive = False,
    address: Address = None,
    workers: Workers = None,
) -> None:
    """Detect and localise rulers, ink and stickers: anomaly maps, masks and scores per image.

    A run stopped halfway (killed, Ctrl-C) resumes when the same command is run again.
    """
    _require_store(model, DEFAULT_DETECTOR, instead="--model PATH to a local detector folder (e.g. models/detector)")
    from dermclean.batch import ERRORS_FILE
    from dermclean.detection import run_detect_dir

    out_dir, skipped = run_detect_dir(images_dir, out, model=model, device=device, batch_size=batch_size,
                                      overwrite=overwrite, on_error=on_error.value, progress=not no_progress,
                                      maps=maps.value, recursive=recursive, address=address, workers=workers)
    written = ["maps", "masks", "scores.csv", "run.json"] if maps != MapFormat.none else ["masks", "scores.csv", "run.json"]
    typer.echo(f"wrote {', '.join(f'{out_dir}/{name}' for name in written)}")
    _report_skipped(skipped, out_dir / ERRORS_FILE)


@app.command()
@_user_errors
def clean(
    images_dir: ImagesDir,
    out: Annotated[Path, typer.Option("--out", help="New output folder: <stem>.png, masks/, run.json [, errors.csv].")],
    method: Annotated[Optional[Method], typer.Option("--method", help="Fill method (default: removal.method in params.yaml, else telea, the best in-mask PSNR measured).", show_default=False)] = None,
    detector: Annotated[Optional[str], typer.Option("--detector", help="Detector URI or folder (default: the champion detector).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Remover: the guided model for inpaint, the image-conditioned model for imagecond.")] = None,
    masks: Annotated[Optional[Path], typer.Option("--masks", help="Folder of <stem>.png masks (0 keep / 255 remove) to use instead of detecting.")] = None,
    dilation: Annotated[Optional[int], typer.Option("--dilation", min=0, help="Mask dilation radius in pixels (default: params.yaml removal.dilation).")] = None,
    device: Device = None,
    batch_size: BatchSize = None,
    overwrite: Overwrite = False,
    on_error: OnErrorOpt = OnError.stop,
    no_progress: NoProgress = False,
    recursive: Recursive = False,
    address: Address = None,
    workers: Workers = None,
) -> None:
    """Remove detected artifacts: fill inside the dilated mask, leave every other pixel as it was.

    A run stopped halfway (killed, Ctrl-C) resumes when the same command is run again.
    """
    if masks is None:
        _require_store(detector, DEFAULT_DETECTOR, instead="--detector PATH to a local detector folder "
                       "(e.g. models/detector), or --masks DIR with <stem>.png masks")
    from dermclean.batch import ERRORS_FILE
    from dermclean.clean import run_clean_dir

    result = run_clean_dir(images_dir, out, method=method.value if method else None, detector=detector, model=model,
                           masks_dir=masks, dilation=dilation, device=device, batch_size=batch_size,
                           overwrite=overwrite, on_error=on_error.value, progress=not no_progress,
                           recursive=recursive, address=address, workers=workers)
    resumed = f" ({result.n_resumed} from an interrupted run)" if result.n_resumed else ""
    typer.echo(f"wrote {result.n_images} cleaned images{resumed}, masks/ and run.json to {result.out_dir}")
    if result.n_large_masks:
        typer.secho(f"{result.n_large_masks} mask(s) cover more than removal.max_mask_area of their image; "
                    f"see run.json", fg=typer.colors.YELLOW, err=True)
    _report_skipped(result.skipped, result.out_dir / ERRORS_FILE)


@app.command()
@_user_errors
def classify(
    images_dir: ImagesDir,
    out: Annotated[Path, typer.Option("--out", help="New CSV file with columns image, p_malignant.")],
    model: Annotated[Optional[str], typer.Option("--model", help="MLflow model URI or local folder (default: models:/dermclean-classifier@champion, the classifier promotion chose to deploy).")] = None,
    variant: Annotated[Optional[str], typer.Option("--variant", help="Use the champion of this training variant instead (raw, telea, imagecond, ...): models:/dermclean-classifier-VARIANT@champion.")] = None,
    device: Device = None,
    batch_size: BatchSize = None,
    overwrite: Overwrite = False,
    on_error: OnErrorOpt = OnError.stop,
    no_progress: NoProgress = False,
) -> None:
    """Melanoma probability per image."""
    model = _variant_model(model, variant)
    _require_store(model, DEFAULT_CLASSIFIER,
                   instead="--model PATH to a local classifier folder (e.g. models/classifiers/raw/seed0)")
    from dermclean.classifier.predict import errors_path, run_classify_dir

    path, skipped = run_classify_dir(images_dir, out, model=model, device=device, batch_size=batch_size,
                                     overwrite=overwrite, on_error=on_error.value, progress=not no_progress,
                                     note=lambda line: typer.secho(line, fg=typer.colors.YELLOW, err=True))
    typer.echo(f"wrote {path}")
    _report_skipped(skipped, errors_path(path))


@app.command()
@_user_errors
def audit(
    images_dir: ImagesDir,
    labels: Annotated[Path, typer.Option("--labels", help="CSV with an image id column (image, image_id or isic_id) and the label column; human ruler/ink/patches columns are compared with the flags when present.")],
    out: Annotated[Path, typer.Option("--out", help="New report folder: flags.csv, shortcut_risk.csv, report.html, audit.json, detections/.")],
    label_column: Annotated[str, typer.Option("--label-column", help="0/1 column of --labels to test artifacts against.")] = "melanoma",
    model: Annotated[Optional[str], typer.Option("--model", help="Detector URI or folder, with operating points (default: the champion; with --detections, the detector that wrote them).")] = None,
    detections: Annotated[Optional[Path], typer.Option("--detections", help="Reuse an earlier `dermclean detect` output instead of detecting.")] = None,
    address: Address = None,
    workers: Workers = None,
    recursive: Recursive = False,
    device: Device = None,
    batch_size: BatchSize = None,
    overwrite: Overwrite = False,
    on_error: OnErrorOpt = OnError.stop,
    no_progress: NoProgress = False,
) -> None:
    """Audit a collection: artifact flags per image, their odds ratio with the label, and an HTML report."""
    if detections is None:
        _require_store(model, DEFAULT_DETECTOR, instead="--model PATH to a local detector folder (e.g. models/detector)")
    from dermclean.audit import run_audit
    from dermclean.batch import ERRORS_FILE

    result = run_audit(images_dir, labels, out, label_column=label_column, model=model, detections=detections,
                       address=address, workers=workers, device=device, batch_size=batch_size, recursive=recursive,
                       overwrite=overwrite, on_error=on_error.value, progress=not no_progress)
    for row in result.risk.itertuples():
        mark = "  <- shortcut risk" if row.risk else ""
        typer.echo(f"{row.artifact:8s} label 1: {100 * row.prevalence_label1:5.1f} %  label 0: "
                   f"{100 * row.prevalence_label0:5.1f} %  odds ratio {row.odds_ratio:.3g} "
                   f"[{row.ci_low:.3g}, {row.ci_high:.3g}]{mark}")
    typer.echo(f"wrote {out}/flags.csv, {out}/shortcut_risk.csv, {out}/report.html")
    _report_skipped(result.skipped, out / "detections" / ERRORS_FILE if detections is None else detections / ERRORS_FILE)


@app.command()
@_user_errors
def sweep(
    params: Annotated[Path, typer.Option("--params", help="params.yaml to read the search space from.")] = Path("params.yaml"),
    manifest: Annotated[Path, typer.Option("--manifest")] = Path("data/prepared/manifest.csv"),
    detector: Annotated[Path, typer.Option("--detector", help="Detector folder produced by the detect stage.")] = Path("models/detector"),
    out: Annotated[Path, typer.Option("--out", help="Folder for the sweep summary and figure.")] = Path("reports/sweep"),
    best: Annotated[Path, typer.Option("--best", help="Where to write the best detection config.")] = Path("sweep_best.yaml"),
    address: Annotated[Optional[str], typer.Option("--address", help="Ray cluster address (default: params sweep.address or RAY_ADDRESS; else a local Ray).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Insist on resuming an interrupted sweep (default: resume a matching unfinished one if any).")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="Always start a new sweep, even if an unfinished one matches.")] = False,
) -> None:
    """Sweep noise level L, guidance scale s, guidance kind and DDIM steps with Ray Tune + Optuna (run in a checkout)."""
    from dermclean.sweep.run import sweep_from_files

    result = sweep_from_files(params_path=params, manifest_path=manifest, detector_dir=detector, out_dir=out,
                              best_path=best, address=address, resume=resume, fresh=fresh)
    typer.echo(f"best {result.best_config} (validation pixel AP {result.best_metric:.4f}); wrote {best}")


@bench_app.command("detect")
@_user_errors
def bench_detect_cmd(
    model: Annotated[Optional[str], typer.Option("--model", help="Detector URI or folder (default: models/detector, else the champion).")] = None,
    images: Annotated[Optional[Path], typer.Option("--images", help="Folder of images to time on (default: the prepared manifest's test split).")] = None,
    device: Device = None,
    batch_size: BatchSize = None,
    n_images: Annotated[int, typer.Option("--n-images", min=1, help="Images to time.")] = 16,
    reference: Annotated[bool, typer.Option("--reference/--no-reference", help="Also time the Wolleb reference configuration (L=500/1000, every step, batch 1).")] = True,
    reference_images: Annotated[int, typer.Option("--reference-images", min=1, help="Images for the (slow) reference timing.")] = 1,
    cpu_bf16: Annotated[Optional[bool], typer.Option("--cpu-bf16/--cpu-fp32", help="bf16 autocast on CPU, or fp32 (default: the bundle's detection.cpu_bf16).", show_default=False)] = None,
) -> None:
    """Images per second of the configured detector next to the Wolleb reference configuration."""
    from dermclean.detection.bench import bench_detect_cli

    bench_detect_cli(model=model, images=images, device=device, batch_size=batch_size, n_images=n_images,
                     reference=reference, reference_images=reference_images, cpu_bf16=cpu_bf16)


@app.command()
@_user_errors
def generate(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="New output folder: images/, masks/ (per-type bit codes, not removal masks), manifest.csv.")],
    n_images: Annotated[int, typer.Option("--n-images", min=1)] = 160,
    size: Annotated[int, typer.Option("--size", min=16)] = 64,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    shortcut_artifact: Annotated[Optional[str], typer.Option("--shortcut-artifact", help="Artifact correlated with the label (e.g. patches, ink).")] = "patches",
    shortcut_strength: Annotated[float, typer.Option("--shortcut-strength", min=0.0, max=1.0)] = 0.8,
    overwrite: Overwrite = False,
) -> None:
    """Generate the embedded procedural dermoscopy set (exact artifact masks, deterministic by seed)."""
    from dermclean.data.synthetic import SyntheticConfig, generate_folder

    config = SyntheticConfig(n_images=n_images, size=size, seed=seed, shortcut_artifact=shortcut_artifact,
                             shortcut_strength=shortcut_strength)
    df = generate_folder(out, config, overwrite=overwrite, progress=True)
    typer.echo(f"wrote {len(df)} images to {out}")


@app.command("sample-grid")
@_user_errors
def sample_grid(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="New PNG file to write.")],
    n: Annotated[int, typer.Option("--n", min=1)] = 16,
    size: Annotated[int, typer.Option("--size", min=16)] = 128,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    overwrite: Overwrite = False,
) -> None:
    """Write a grid of embedded-default samples (the picture in the README)."""
    from dermclean.data.synthetic import make_sample_grid

    typer.echo(f"wrote {make_sample_grid(out, n=n, size=size, seed=seed, overwrite=overwrite)}")


@app.command()
@_user_errors
def validate(
    folder: Annotated[Path, typer.Argument(metavar="FOLDER_OR_MANIFEST", help="A folder laid out like ISIC (images/ + labels.csv), or a manifest.csv.")],
    suite: Annotated[Optional[Path], typer.Option("--suite", help="GX suite definition (default: the manifest suite shipped with dermclean).", show_default=False)] = None,
    min_size: Annotated[int, typer.Option("--min-size", min=1, help="Smallest side in pixels.")] = 32,
    max_size: Annotated[int, typer.Option("--max-size", min=1, help="Largest side in pixels.")] = 8192,
    require_split: Annotated[bool, typer.Option("--require-split", help="Every row must name its split (train/val/test); by default a missing split is allowed (the pipeline assigns splits).")] = False,
) -> None:
    """Run the Great Expectations gate over a dataset folder or manifest; list failing rows."""
    from dermclean.data.validate import validate_path

    n_rows, suite_used = validate_path(folder, suite=suite, min_size=min_size, max_size=max_size,
                                       require_split=require_split)
    typer.echo(f"{n_rows} rows passed every expectation in {suite_used}")


def run() -> None:  # pragma: no cover - console entry point alias
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
