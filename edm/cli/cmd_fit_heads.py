"""``edm fit-heads``: train beat/downbeat/boundary and energy heads from an embedding store."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import click

from edm.heads.config import AUTO_EPOCHS, CO_TEACHING_FORGET_RATE, TrainConfig

_LABELS = {
    "beat_f": "beat F",
    "downbeat_f": "downbeat F",
    "boundary_f_0.5s": "boundary F @0.5 s",
    "boundary_f_3s": "boundary F @3 s",
}


def _fmt(value: Any) -> str:
    return "—" if value is None or not math.isfinite(float(value)) else f"{float(value):.3f}"


@click.command(
    epilog="""\b
Examples:
  edm fit-heads --store store.zarr --annotations annotations/ --out models/mine
  edm fit-heads --store store.zarr --annotations synth/rekordbox.xml --out models/synth \\
      --folds 5 --co-teaching --epochs 40 --json
  edm fit-heads --store store.zarr --annotations annotations/ --out models/pl --pseudo-label \\
      --include-unlabeled
  edm fit-heads --store store.zarr --annotations annotations/ --out models/scratch --init none
  edm embed audio/ --store store.zarr --backbone mert --model DIR --layers 11
  edm fit-heads --store store.zarr --annotations annotations/ --out models/ft --finetune-top 1
\b
Annotations: a folder of edm annotation files (*.yaml) and/or truth files (*.jams), or a
Rekordbox XML. They are matched to store tracks by content hash, else by audio path.
Writes models/NAME/: config.json, heads.safetensors, energy_*.ubj, metrics.json and, with
--folds >= 2, oof.safetensors (each track's prediction by the check model that never saw it,
for `edm label-audit`).
Exit codes: 0 fitted (every annotation matched), 1 fitted but some annotations were not
usable, or nothing could be fitted, 2 usage error."""
)
@click.option(
    "--store",
    "store_path",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Embedding store written by `edm embed`.",
)
@click.option(
    "--annotations",
    "annotations_path",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Annotation folder (*.yaml, *.jams) or Rekordbox XML file.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output heads folder, e.g. models/NAME.",
)
@click.option(
    "--backbone",
    "backbone_key",
    default=None,
    help="Backbone key in the store (default: the store's most common one).",
)
@click.option(
    "--folds",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Check models, each trained without one N-th of the tracks, so every track gets a "
    "prediction from a model that never saw it (what label-audit needs); 0 or 1 = none, faster.",
)
@click.option(
    "--co-teaching",
    is_flag=True,
    help="Train two models that each skip the frames the other finds hardest (often wrong "
    "labels); about twice the time, steadier on a noisy library.",
)
@click.option(
    "--forget-rate",
    type=click.FloatRange(0.0, 0.9),
    default=None,
    help=f"Share of the hardest frames skipped in each training step (default "
    f"{CO_TEACHING_FORGET_RATE:g} with --co-teaching, else {TrainConfig.forget_rate:g}).",
)
@click.option(
    "--label-smoothing",
    type=click.FloatRange(0.0, 0.49),
    default=0.0,
    show_default=True,
    help="Soften the targets by this much (0.1: aim at 0.95 where a beat is labelled, 0.05 "
    "elsewhere), so a wrong label costs less; 0 = off.",
)
@click.option(
    "--pseudo-label",
    is_flag=True,
    help="Also learn from tracks without labels: a first model labels them, a second model "
    "trains on those labels and yours (about twice the time).",
)
@click.option(
    "--include-unlabeled",
    is_flag=True,
    help="Also use store tracks that have no annotation (as unlabelled tracks, for "
    "--pseudo-label).",
)
@click.option("--no-augment", is_flag=True, help="No time stretch, feature dropout or noise.")
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Passes over the training tracks; the time grows with it. More fit your labels "
    "closer, with more risk of learning their mistakes too.  [default: 4 from the shipped "
    "model (--init); from random weights 16, more on a small library so that a fit makes at "
    "least 60 batch steps (20 at 24 tracks)]",
)
@click.option(
    "--crop",
    "crop_s",
    type=click.FloatRange(min=5.0),
    default=TrainConfig.crop_s,
    show_default=True,
    help="Training crop length in seconds.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Random seed: the same seed, data and settings train the same model.",
)
@click.option(
    "--init",
    default="default",
    show_default=True,
    metavar="default|none|DIR",
    help="Where the nets start: edm's shipped model (when the store was embedded with its "
    "backbone; else random weights), random weights (none), or another heads folder. Starting "
    "from a trained model needs a quarter of the epochs.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes training the k-fold and final models side by side, one thread each; "
    "with --folds 0/1, processes that split each batch of the one model [default: one per "
    "CPU].",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Torch CPU threads of a fit in this process (--workers 1, or --folds 0/1 with "
    "--pseudo-label or --finetune-top) [default: one per CPU].",
)
@click.option(
    "--logdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write TensorBoard scalars (training loss per epoch) here.",
)
@click.option(
    "--finetune-top",
    type=click.IntRange(min=1),
    default=None,
    help="MERT only: also train the model's top N layers; the store key must hold layer L-N "
    "(edm embed --backbone mert --layers L-N).",
)
@click.option(
    "--finetune-lr",
    type=click.FloatRange(min=0.0, min_open=True),
    default=1e-4,
    show_default=True,
    help="Peak learning rate of the fine-tuned MERT layers (the heads keep theirs).",
)
@click.option("--json", "as_json", is_flag=True, help="Print metrics as JSON.")
def command(
    store_path: Path,
    annotations_path: Path,
    out_dir: Path,
    backbone_key: str | None,
    folds: int,
    co_teaching: bool,
    forget_rate: float | None,
    label_smoothing: float,
    pseudo_label: bool,
    include_unlabeled: bool,
    no_augment: bool,
    epochs: int | None,
    crop_s: float,
    seed: int,
    init: str,
    workers: int | None,
    threads: int | None,
    logdir: Path | None,
    finetune_top: int | None,
    finetune_lr: float,
    as_json: bool,
) -> None:
    """Train beat/downbeat/boundary and energy heads from a store and annotations.

    \b
    Plain recipe: teach edm your own library's beat grids and cue points.
      1. edm data import rekordbox.xml --out annotations/
      2. edm embed annotations/ --store store.zarr         (reads each track once)
      3. edm fit-heads --store store.zarr --annotations annotations/ --out models/mine
    then `edm analyze TRACK --models models/mine` uses it, and `edm label-audit ... --models
    models/mine` lists the labels it finds suspicious.
    Time: measured on 2 cores, the default --folds 5 trains six models (five check models
    and the final one) side by side, one per core (--workers): about 1.6 minutes for 100
    three-minute tracks, 33 s for 24 two-minute tracks, starting from the shipped model
    (--init default). --folds 0 trains only the final model, its batches split over the
    cores (37 s per 100 three-minute tracks), but leaves label-audit nothing to compare with.
    From random weights (--init none) a fit takes 2-3 times as long.

    \b
    In plain words: with --folds 5 each track is predicted by a model that never trained on
    it, which is how label-audit tells a wrong label from one the model learned by heart.
    Labels from DJ software are noisy; --co-teaching and --label-smoothing make training
    trust any single label less.
    """
    # Waiting OpenMP threads sleep instead of spinning: a fit sharing the machine with other
    # work then costs its share of the CPU (read once, when torch loads).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from rich.console import Console

    from edm.heads.fit import FitError, fit_from_store

    if threads:
        torch.set_num_threads(threads)
    console = Console(stderr=True)
    config = TrainConfig(
        epochs=epochs,
        crop_s=crop_s,
        co_teaching=co_teaching,
        forget_rate=forget_rate if forget_rate is not None
        else (CO_TEACHING_FORGET_RATE if co_teaching else TrainConfig.forget_rate),
        label_smoothing=label_smoothing,
        pseudo_label=pseudo_label,
        augment=not no_augment,
        seed=seed,
    )
    writer = None
    if logdir is not None:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(logdir))
        except ImportError:
            console.print("--logdir needs the tensorboard package; logging skipped")
    display = _FitProgress(console, epochs or AUTO_EPOCHS, disable=as_json, writer=writer)
    started = time.perf_counter()
    try:
        with display.progress:
            fitted = fit_from_store(
                store_path,
                annotations_path,
                out_dir,
                config,
                backbone_key=backbone_key,
                folds=folds,
                include_unlabeled=include_unlabeled,
                finetune_top=finetune_top,
                finetune_learning_rate=finetune_lr,
                init=init,
                progress_for=display.stage,
                workers=workers,
            )
    except (FitError, ValueError, OSError, RuntimeError) as error:
        raise click.ClickException(str(error)) from error
    finally:
        if writer is not None:
            writer.close()
    fitted.report.metrics["seconds"]["total_s"] = time.perf_counter() - started
    report, problems = fitted.report, fitted.problems

    if as_json:
        click.echo(json.dumps({"out": str(out_dir), **report.metrics}, indent=2))
    else:
        _print_table(report.metrics, out_dir)
        for line in problems:
            click.echo(line, err=True)
    if problems:
        raise SystemExit(1)


class _FitProgress:
    """One bar per fit ("fold 1/5" …, "final") and one for all of them, each with an ETA; a
    line per finished fit (also in logs, where bars do not render)."""

    def __init__(self, console: Any, epochs: int, *, disable: bool, writer: Any) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console, self.epochs, self.writer, self.disable = console, epochs, writer, disable
        self.progress = Progress(
            TextColumn("{task.description:>10}"),
            BarColumn(),
            TextColumn("epoch {task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]} val {task.fields[val]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=disable,
        )
        self.overall: Any = None
        self.planned: dict[str, int] = {}

    def stage(self, name: str) -> Any:
        if self.overall is None:
            self.overall = self.progress.add_task("all fits", total=0, loss="", val="")
        task = self.progress.add_task(name, total=self.epochs, loss="—", val="—", start=False)
        self.planned[name] = self.epochs
        self.progress.update(self.overall, total=sum(self.planned.values()))
        seconds = 0.0

        def update(report: Any) -> None:
            nonlocal seconds
            seconds += report.seconds
            if report.epoch == 1:
                self.progress.start_task(task)
            val = "—" if report.validation_loss is None else f"{report.validation_loss:.4f}"
            self.progress.update(
                task,
                completed=report.epoch,
                total=report.epochs,
                loss=f"{report.loss:.4f}",
                val=val,
            )
            self.planned[name] = report.epochs  # early stopping shortens the plan
            self.progress.update(
                self.overall,
                total=sum(self.planned.values()),
                advance=1,
            )
            if self.writer is not None:
                tag = name.replace(" ", "_").replace("/", "of")
                self.writer.add_scalar(f"loss/{tag}", report.loss, report.epoch)
                if report.validation_loss is not None:
                    self.writer.add_scalar(f"val_loss/{tag}", report.validation_loss, report.epoch)
            if report.epoch == report.epochs and not self.disable:
                self.progress.console.print(
                    f"{name}: {report.epoch} epochs in {seconds:.1f} s, loss {report.loss:.4f}"
                    + (f", validation {val}" if report.validation_loss is not None else "")
                )

        return update


_STAGES = {
    "store_read_s": "read store",
    "fits_s": "train (k-fold + final)",
    "energy_s": "energy head",
    "total_s": "total",
}


def _print_table(metrics: dict[str, Any], out_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"edm fit-heads → {out_dir}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    oof = metrics.get("oof_vs_labels", {})
    for name, label in _LABELS.items():
        if name in oof:
            table.add_row(f"{label} (out-of-fold vs labels)", _fmt(oof[name]))
    for name, label in _LABELS.items():
        if name in metrics.get("validation_tier1", {}):
            table.add_row(
                f"{label} (final model, Tier 1 validation)", _fmt(metrics["validation_tier1"][name])
            )
    for name, value in sorted(metrics.get("energy_mae_oof", {}).items()):
        table.add_row(f"energy MAE {name} (out-of-fold)", _fmt(value))
    for name, value in metrics.get("seconds", {}).items():
        table.add_row(f"time: {_STAGES.get(name, name.removesuffix('_s'))} (s)", f"{value:.1f}")
    table.add_row("tracks (labelled / all)", f"{metrics['n_labelled']} / {metrics['n_tracks']}")
    if "init" in metrics:
        table.add_row("nets", metrics["init"])
    console = Console()
    console.print(table)
    fits = metrics.get("fits", {})
    if fits:
        per_fit = Table(title="fits")
        for column in ("fit", "epochs", "best", "loss", "val loss", "wall s", "CPU s", "train s"):
            per_fit.add_column(column, justify="left" if column == "fit" else "right")
        for name, fit in fits.items():
            per_fit.add_row(
                name,
                str(fit["epochs"]),
                str(fit["best_epoch"]),
                _fmt(fit["loss"]),
                _fmt(fit["validation_loss"]),
                f"{fit.get('wall_s', float('nan')):.1f}",
                f"{fit.get('cpu_s', float('nan')):.1f}",
                f"{fit.get('train_s', float('nan')):.1f}",
            )
        console.print(per_fit)
