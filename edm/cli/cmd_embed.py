"""``edm embed``: decode a library and write backbone frame embeddings to a Zarr store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from edm.backbones import BACKBONE_NAMES
from edm.cli.problems import echo_problems
from edm.inputs import MIN_DURATION_S


@click.command(epilog="""\b
Examples:
  edm embed ~/Music/techno --store store.zarr
  edm embed annotations/ --store store.zarr            # exactly the labelled tracks
  edm embed rekordbox.xml --store store.zarr --workers 2
  edm embed ~/Music --store store.zarr --backbone mert --model m-a-p/MERT-v1-95M --layers 6
  edm embed ~/Music --store store.zarr --backbone mert --model ./MERT-v1-95M --layers 4-8 \\
      --project-dim 128 --device cuda
  edm embed /shared/music --store /shared/store.zarr --ray auto   # on a Ray cluster
\b
Re-running skips tracks already in the store (same audio bytes, same backbone key);
an interrupted run leaves a readable store and the next run resumes.
\b
Exit codes: 0 every track is in the store, 1 some inputs failed (listed on stderr and
in --json), 2 usage error, 130 interrupted.""")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--store", "store_path", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Zarr store folder (created if missing).")
@click.option("--backbone", type=click.Choice(BACKBONE_NAMES), default=BACKBONE_NAMES[0],
              show_default=True, help="Feature extractor.")
@click.option("--model", default=None,
              help="mert: Hugging Face id or local folder [default: m-a-p/MERT-v1-95M].")
@click.option("--layers", default=None,
              help="mert: hidden layer(s), e.g. 6, 4-8 or 3,6,9 (several are averaged) "
                   "[default: the middle layer].")
@click.option("--project-dim", type=click.IntRange(min=1), default=None,
              help="mert: project to this many dimensions (fixed random orthogonal).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="mert: where the model runs (fp16 on cuda).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="mert: windows per forward pass [default: 16 on cuda, 2 on cpu].")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Decoding processes [default: CPU count; 0 = all in this process].")
@click.option("--min-duration", type=click.FloatRange(min=0), default=MIN_DURATION_S,
              show_default=True,
              help="Reject tracks shorter than this many seconds.")
@click.option("--ray", "ray_address", default=None,
              help="Run on a Ray cluster at this address ('auto' = the one this node joined).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def command(inputs: tuple[str, ...], store_path: Path, backbone: str, model: str | None,
            layers: str | None, project_dim: int | None, device: str, batch_size: int | None,
            workers: int | None, min_duration: float, ray_address: str | None, as_json: bool,
            quiet: bool) -> None:
    """Decode audio files and write backbone frame embeddings to a Zarr store.

    INPUTS are audio files, folders of audio (searched recursively), annotation folders
    (YAML files naming their audio in track.path) or Rekordbox XML exports.
    """
    from edm.backbones.mert import BackboneError
    from edm.store import StoreError

    options = _backbone_options(backbone, model, layers, project_dim, device, batch_size)
    try:
        if ray_address is not None:
            from edm.store.ray_runner import embed_library_ray

            summary = embed_library_ray(list(inputs), store_path, backbone, address=ray_address,
                                        backbone_options=options, min_duration_s=min_duration,
                                        progress=not quiet and not as_json)
        else:
            from edm.store.embed import embed_library

            if backbone == "mert":
                _quiet_transformers()
            summary = embed_library(list(inputs), store_path, backbone, backbone_options=options,
                                    workers=workers, min_duration_s=min_duration,
                                    progress=not quiet and not as_json)
    except (BackboneError, StoreError, ImportError) as error:
        raise click.ClickException(str(error)) from error
    _report(summary, as_json)
    raise SystemExit(summary.exit_code)


def _backbone_options(backbone: str, model: str | None, layers: str | None,
                      project_dim: int | None, device: str, batch_size: int | None
                      ) -> dict[str, Any]:
    if backbone == "spectral":
        given = {"--model": model, "--layers": layers, "--project-dim": project_dim,
                 "--batch-size": batch_size}
        used = [flag for flag, value in given.items() if value is not None]
        if used:
            raise click.UsageError(f"{', '.join(used)} only apply to --backbone mert")
        return {}
    from edm.backbones.mert import DEFAULT_MODEL, parse_layers

    try:
        parsed = parse_layers(layers)
    except ValueError as error:
        raise click.BadParameter(f"{layers!r}: use e.g. 6, 4-8 or 3,6,9",
                                 param_hint="--layers") from error
    options: dict[str, Any] = {"model": model or DEFAULT_MODEL, "device": device}
    if parsed is not None:
        options["layers"] = parsed
    if project_dim is not None:
        options["project_dim"] = project_dim
    if batch_size is not None:
        options["batch_size"] = batch_size
    return options


def _quiet_transformers() -> None:
    # Our own progress bar reports the job; transformers' per-load bars would interleave.
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def _report(summary: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
    if not as_json and summary.warnings:
        click.echo(f"{len(summary.warnings)} label warnings from the inputs (not embedding "
                   "problems; see edm data validate or --json)", err=True)
    echo_problems([result.reason for result in summary.failed], prefix="failed: ",
                  what="more failures")
    if as_json:
        return
    speed = (f", {summary.audio_seconds / summary.seconds:.0f}x real time"
             if summary.seconds and summary.audio_seconds else "")
    state = " (interrupted: run again to resume)" if summary.interrupted else ""
    click.echo(f"{summary.backbone_key} → {summary.store}: {len(summary.embedded)} embedded, "
               f"{len(summary.present)} already present, {len(summary.failed)} failed "
               f"in {summary.seconds:.1f} s{speed}{state}", err=True)
