"""The whole edm loop on a small synthetic library, as a newcomer's first run.

synth → data import → embed → fit-heads → label-audit → analyze → evaluate, each step a call
into the same library functions the commands use, in one workspace folder:

```
WORKSPACE/
  library/        a DJ library: audio/, truth/*.jams, rekordbox.xml (noisy), injected_errors.csv
  held_out/       tracks the heads never see, with exact truth, for the evaluation
  annotations/    the Rekordbox labels imported as edm annotation files
  store.zarr      spectral frame embeddings of every track
  models/heads/   the fitted heads (config.json, safetensors, XGBoost energy, metrics, OOF)
  reports/        audit.csv, predictions/{default,fitted}/*.json, evaluation.json, demo.json
  analysis.png    one held-out track analyzed and plotted
  analysis.xml    its beat grid and section cues as a Rekordbox XML
```
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DemoConfig:
    """Size of the demo library and of the training run.

    The defaults take about 2 minutes on a 2-core CPU; :meth:`sized` with ``fast=True`` gives
    CI's smoke test (well under a minute).
    """

    tracks: int = 12
    held_out: int = 4
    minutes: float = 1.5
    folds: int = 3
    epochs: int | None = None  # fit-heads' default (4 from the shipped model)
    seed: int = 7
    noise: str = "default"

    @classmethod
    def sized(cls, *, fast: bool = False, tracks: int | None = None) -> DemoConfig:
        config = cls(tracks=6, held_out=2, minutes=0.5, folds=2) if fast else cls()
        if tracks is not None:
            if tracks < 4:
                raise ValueError(f"--tracks must be at least 4 (k-fold needs tracks), got {tracks}")
            config = replace(config, tracks=tracks)
        return config


@dataclass
class StepReport:
    name: str
    seconds: float
    summary: str


@dataclass
class DemoReport:
    """What each step did, the evaluation table, the audit's precision and where outputs are."""

    workspace: str
    config: DemoConfig
    steps: list[StepReport] = field(default_factory=list)
    evaluation: dict[str, dict[str, float | None]] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    plot: str = ""
    rekordbox_xml: str = ""
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Steps:
    """Times each step and reports it, so the demo reads as a list of what happened."""

    def __init__(self, report: DemoReport, on_step: Callable[[str], None] | None) -> None:
        self.report = report
        self.on_step = on_step

    def run(self, name: str, action: Callable[[], str]) -> None:
        if self.on_step is not None:
            self.on_step(name)
        started = time.perf_counter()
        summary = action()
        self.report.steps.append(StepReport(name, round(time.perf_counter() - started, 2), summary))


def run_demo(
    workspace: str | Path,
    config: DemoConfig | None = None,
    *,
    on_step: Callable[[str], None] | None = None,
) -> DemoReport:
    """Run the loop in ``workspace`` and return its report (also written to reports/demo.json).

    Steps whose output already exists in the workspace are redone, so a second run gives a
    fresh, comparable report.
    """
    from edm.analyze import analyze, load_model
    from edm.analyze.plot import plot_analysis
    from edm.analyze.writers import write_json, write_rekordbox
    from edm.audit.report import write_csv as write_audit_csv
    from edm.audit.run import audit_library
    from edm.audit.scoring import read_injected, score_findings
    from edm.data.rekordbox import read_rekordbox_xml
    from edm.data.schema import annotation_filename, save_annotation
    from edm.evaluate import evaluate_folder
    from edm.heads.fit import fit_from_store
    from edm.heads.train import TrainConfig
    from edm.store import EmbeddingStore
    from edm.store.embed import embed_library
    from edm.synth import make_library

    config = config or DemoConfig()
    root = Path(workspace)
    root.mkdir(parents=True, exist_ok=True)
    library, held_out = root / "library", root / "held_out"
    annotations_dir, store_path = root / "annotations", root / "store.zarr"
    model_dir, reports = root / "models" / "heads", root / "reports"
    report = DemoReport(workspace=str(root), config=config)
    steps = _Steps(report, on_step)
    state: dict[str, Any] = {}

    def synth() -> str:
        made = make_library(library, tracks=config.tracks, seed=config.seed,
                            minutes=config.minutes, noise=config.noise)
        make_library(held_out, tracks=config.held_out, seed=config.seed + 10_000,
                     minutes=config.minutes, noise="none")
        errors = sum(made.errors_by_kind.values())
        return (f"{len(made.tracks)} training tracks with {errors} planted label errors, "
                f"{config.held_out} held-out tracks with exact truth")

    def import_labels() -> str:
        imported = read_rekordbox_xml(library / "rekordbox.xml")
        for annotation in imported.tracks:
            save_annotation(annotation, annotations_dir / annotation_filename(annotation))
        state["annotations"] = imported.tracks
        report.problems += imported.problems
        cues = sum(len(a.cues) for a in imported.tracks)
        return f"{len(imported.tracks)} tracks, {cues} cues from rekordbox.xml"

    def embed() -> str:
        summary = embed_library([annotations_dir, held_out / "audio"], store_path, "spectral")
        report.problems += [f"{r.path}: {r.reason}" for r in summary.failed]
        return (f"{len(summary.embedded)} embedded, {len(summary.present)} already present, "
                f"{len(summary.failed)} failed ({summary.seconds:.1f} s)")

    def fit() -> str:
        training = TrainConfig(epochs=config.epochs, seed=config.seed)
        fitted = fit_from_store(store_path, annotations_dir, model_dir, training,
                                folds=config.folds)
        report.problems += fitted.problems
        state["oof"] = fitted.oof
        return f"{len(fitted.oof)} tracks, {config.folds}-fold out-of-fold probabilities"

    def audit() -> str:
        result = audit_library(state["annotations"], state["oof"])
        write_audit_csv(result.findings, reports / "audit.csv")
        scores = score_findings(result.findings, read_injected(library / "injected_errors.csv"))
        report.audit = scores
        return (f"{len(result.findings)} findings; precision@20 {scores['P@20']:.2f} "
                "against the planted errors")

    def analyze_held_out() -> str:
        store = EmbeddingStore(store_path, mode="r")
        audio_files = sorted((held_out / "audio").iterdir())
        for name, model in (("default", load_model()), ("fitted", load_model(model_dir))):
            analyses = [analyze(path, model, store=store) for path in audio_files]
            for analysis in analyses:
                stem = Path(analysis.path).stem
                write_json(analysis, reports / "predictions" / name / f"{stem}.json")
            state[name] = analyses
        first = state["fitted"][0]
        report.plot = str(plot_analysis(first, root / "analysis.png"))
        report.rekordbox_xml = str(write_rekordbox([first], root / "analysis.xml").path)
        return (f"{len(audio_files)} held-out tracks with the default and the fitted model; "
                f"plot and Rekordbox XML of {Path(first.path).name}")

    def evaluate() -> str:
        for name in ("default", "fitted"):
            folder = evaluate_folder(held_out / "truth", reports / "predictions" / name)
            report.evaluation[name] = folder.to_dict()["mean"]
            report.problems += folder.problems
        fitted = report.evaluation["fitted"]
        return (f"fitted model: beat F {fitted.get('beat_f')}, "
                f"boundary F@3s {fitted.get('boundary_f_3s')}")

    steps.run("synth", synth)
    steps.run("import", import_labels)
    steps.run("embed", embed)
    steps.run("fit-heads", fit)
    steps.run("label-audit", audit)
    steps.run("analyze", analyze_held_out)
    steps.run("evaluate", evaluate)
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "demo.json").write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    return report
