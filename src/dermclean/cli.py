"""The ``dermclean`` command line: a thin layer over the library (see ``dermclean --help``).

Every command calls the same library function that the DVC stages and Ray Tune trials call.
User errors (bad input files, missing models) print one clear line and exit with status 2.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="dermclean",
    help="Find and remove shortcut artifacts (rulers, ink, stickers) in dermoscopic images with "
    "diffusion models, and measure shortcut learning. Research use only; not for clinical use.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
bench_app = typer.Typer(help="Benchmarks (speed figures for the README), not tests.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

ImagesDir = Annotated[Path, typer.Argument(help="Folder of *.jpg/*.jpeg/*.png images (not recursive).")]
Device = Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1 ... (default: CUDA if available).")]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Images per forward pass (default: from the model's config).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace the contents of a non-empty output folder.")]


def _user_errors(func):
    """Turn expected user errors into one red line on stderr and exit status 2 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from dermclean.errors import USER_ERRORS

        try:
            return func(*args, **kwargs)
        except USER_ERRORS as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2) from None

    return wrapper


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more detail.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
@_user_errors
def detect(
    images_dir: ImagesDir,
    out: Annotated[Path, typer.Option("--out", help="Output folder: maps/, masks/, scores.csv, run.json.")],
    model: Annotated[Optional[str], typer.Option("--model", help="MLflow model URI or local detector folder (default: models:/dermclean-detector@champion).")] = None,
    device: Device = None,
    batch_size: BatchSize = None,
    overwrite: Overwrite = False,
) -> None:
    """Detect and localise rulers, ink and stickers: anomaly maps, masks and scores per image."""
    from dermclean.detection import run_detect_dir

    out_dir = run_detect_dir(images_dir, out, model=model, device=device, batch_size=batch_size, overwrite=overwrite)
    typer.echo(f"wrote {out_dir}/maps, {out_dir}/masks, {out_dir}/scores.csv, {out_dir}/run.json")


@app.command()
@_user_errors
def clean(
    images_dir: ImagesDir,
    out: Annotated[Path, typer.Option("--out", help="Output folder: <stem>.png, masks/, run.json.")],
    method: Annotated[str, typer.Option("--method", help="inpaint | imagecond | telea.")] = "inpaint",
    detector: Annotated[Optional[str], typer.Option("--detector", help="Detector URI or folder (default: the champion detector).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Remover: the guided model for inpaint, the image-conditioned model for imagecond.")] = None,
    masks: Annotated[Optional[Path], typer.Option("--masks", help="Folder of <stem>.png masks to use instead of detecting.")] = None,
    dilation: Annotated[Optional[int], typer.Option("--dilation", min=0, help="Mask dilation radius in pixels (default: params.yaml removal.dilation).")] = None,
    device: Device = None,
    batch_size: BatchSize = None,
    overwrite: Overwrite = False,
) -> None:
    """Remove detected artifacts: inpaint inside the dilated mask, leave every other pixel as it was."""
    from dermclean.removal import run_clean_dir

    out_dir = run_clean_dir(images_dir, out, method=method, detector=detector, model=model, masks_dir=masks,
                            dilation=dilation, device=device, batch_size=batch_size, overwrite=overwrite)
    typer.echo(f"wrote cleaned images, masks/ and run.json to {out_dir}")


@app.command()
@_user_errors
def classify(
    images_dir: ImagesDir,
    out: Annotated[Path, typer.Option("--out", help="Output CSV with columns image, p_malignant.")],
    model: Annotated[Optional[str], typer.Option("--model", help="MLflow model URI or local folder (default: models:/dermclean-classifier-raw@champion).")] = None,
    device: Device = None,
    batch_size: BatchSize = None,
) -> None:
    """Melanoma probability per image."""
    from dermclean.classifier.predict import run_classify_dir

    path = run_classify_dir(images_dir, out, model=model, device=device, batch_size=batch_size)
    typer.echo(f"wrote {path}")


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
    """Sweep noise level L, guidance scale s, guidance kind and DDIM steps with Ray Tune + Optuna."""
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
    cpu_bf16: Annotated[Optional[bool], typer.Option("--cpu-bf16/--cpu-fp32", help="bf16 autocast on CPU, or fp32 (default: the bundle's detection.cpu_bf16).")] = None,
) -> None:
    """Images per second of the configured detector next to the Wolleb reference configuration."""
    from dermclean.detection.bench import bench_detect_cli

    bench_detect_cli(model=model, images=images, device=device, batch_size=batch_size, n_images=n_images,
                     reference=reference, reference_images=reference_images, cpu_bf16=cpu_bf16)


@app.command()
@_user_errors
def generate(
    out: Annotated[Path, typer.Argument(help="Output folder: images/, masks/, manifest.csv.")],
    n_images: Annotated[int, typer.Option("--n-images", min=1)] = 160,
    size: Annotated[int, typer.Option("--size", min=16)] = 64,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    shortcut_artifact: Annotated[Optional[str], typer.Option("--shortcut-artifact", help="Artifact correlated with the label (e.g. patches, ink).")] = "patches",
    shortcut_strength: Annotated[float, typer.Option("--shortcut-strength", min=0.0, max=1.0)] = 0.8,
) -> None:
    """Generate the embedded procedural dermoscopy set (exact artifact masks, deterministic by seed)."""
    from dermclean.data.manifest import write_manifest
    from dermclean.data.synthetic import SyntheticConfig, generate_dataset

    config = SyntheticConfig(n_images=n_images, size=size, seed=seed, shortcut_artifact=shortcut_artifact,
                             shortcut_strength=shortcut_strength)
    df = generate_dataset(out, config, progress=True)
    write_manifest(df, out / "manifest.csv")
    typer.echo(f"wrote {len(df)} images to {out}")


@app.command("sample-grid")
@_user_errors
def sample_grid(
    out: Annotated[Path, typer.Argument(help="PNG file to write.")] = Path("docs/sample_grid.png"),
    n: Annotated[int, typer.Option("--n", min=1)] = 16,
    size: Annotated[int, typer.Option("--size", min=16)] = 128,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Write a grid of embedded-default samples (what the README shows)."""
    from dermclean.data.synthetic import make_sample_grid

    typer.echo(f"wrote {make_sample_grid(out, n=n, size=size, seed=seed)}")


@app.command()
@_user_errors
def validate(
    folder: Annotated[Path, typer.Argument(help="A folder laid out like ISIC (images/ + labels.csv), or a manifest.csv.")],
    suite: Annotated[Path, typer.Option("--suite", help="GX suite definition.")] = Path("monitoring/expectations/manifest.json"),
    min_size: Annotated[int, typer.Option("--min-size")] = 32,
    max_size: Annotated[int, typer.Option("--max-size")] = 8192,
) -> None:
    """Run the Great Expectations gate over a dataset folder or manifest; list failing rows."""
    from dermclean.data.manifest import read_manifest
    from dermclean.data.readers import read_folder
    from dermclean.data.validate import validate_manifest

    if folder.is_dir():
        df, manifest_path = read_folder(folder), folder / "labels.csv"
    else:
        df, manifest_path = read_manifest(folder), folder
    result = validate_manifest(df, manifest_path, suite_path=suite, min_size=min_size, max_size=max_size)
    result.raise_for_failures()
    typer.echo(f"{len(df)} rows passed every expectation in {suite}")


def run() -> None:  # pragma: no cover - console entry point alias
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
