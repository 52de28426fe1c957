"""A trained heads folder: save, load back, predict. No pickles anywhere.

Layout of ``models/NAME/``:

- ``config.json``: format tag, backbone (key, name, options, frames per second, dim), the TCN's
  constructor arguments, number of nets (2 with co-teaching), section labels, training config,
  peak-picking settings, energy-head config, provenance (store, backbone key, annotation-set
  hash, edm version, date);
- ``heads.safetensors``: weights of every net (``net0.…``, ``net1.…``), input statistics included;
  with ``--finetune-top N`` also the fine-tuned MERT layers (``net0.top.layers.…``), whose HuBERT
  config, checkpoint, N and stored layer index are in ``config.json`` under ``model``
  (see :mod:`edm.heads.finetune`): ``predict`` applies them to the stored layer transparently;
- ``energy_<target>.ubj``: one XGBoost model per energy target, in XGBoost's own format;
- ``metrics.json``: scores of the fit (out-of-fold and held-out when available);
- ``oof.safetensors``: out-of-fold activations per track (``<track_id>/beat`` …), frame rate in
  the file's metadata; read with :func:`load_oof` (``edm label-audit`` does).

Loading rebuilds each net from ``config.json`` and loads the weights into it, so a folder
predicts the numbers it predicted when it was saved. Plain TemporalHeads nets load as
:class:`~edm.heads.inference.NumpyHeads` and predict in numpy (equal to float32 rounding,
about 1e-7): ``import torch`` alone takes about 1.7 s, more than half of ``edm analyze``'s
budget (issue 7). Fine-tuned nets (MERT top layers) load as torch modules; torch is imported
only then.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy

from edm.data.schema import EnergyData, Section
from edm.heads.activations import EVENT_TASKS, Activations
from edm.heads.energy import EnergyHead
from edm.heads.inference import NumpyHeads, predict_numpy

if TYPE_CHECKING:
    from edm.heads.finetune import FinetunedHeads
    from edm.heads.model import TemporalHeads

FORMAT = "edm-heads"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "heads.safetensors"
OOF_FILE = "oof.safetensors"
METRICS_FILE = "metrics.json"
#: The model edm ships (``benchmarks/build_default_model.py``): what ``edm analyze`` uses
#: without ``--models``, and where ``edm fit-heads`` starts its nets from.
DEFAULT_MODEL_DIR = Path(__file__).parent.parent / "default_model"


class ArtifactError(ValueError):
    """A heads folder that cannot be read; the message names the folder and the problem."""


class Heads:
    """Trained temporal heads (and optionally the energy head) for one backbone.

    ``predict(embeddings, frames_per_second)`` → :class:`Activations` (sigmoid probabilities);
    ``predict_energy(embeddings, descriptors, sections, frames_per_second)`` → one
    :class:`EnergyData` per section.
    """

    def __init__(
        self,
        nets: Sequence[TemporalHeads | FinetunedHeads | NumpyHeads],
        *,
        backbone_key: str,
        frames_per_second: float,
        section_labels: tuple[str, ...] = (),
        energy: EnergyHead | None = None,
        backbone_name: str | None = None,
        backbone_options: Mapping[str, Any] | None = None,
        peaks: Mapping[str, Sequence[float]] | None = None,
        train_config: Mapping[str, Any] | None = None,
        provenance: Mapping[str, Any] | None = None,
    ) -> None:
        if not nets:
            raise ValueError("Heads need at least one net")
        self.nets = list(nets)
        self.backbone_key = backbone_key
        #: Backbone that made the embeddings, and the options that rebuild it (from the store).
        self.backbone_name = backbone_name
        self.backbone_options = dict(backbone_options or {})
        self.frames_per_second = float(frames_per_second)
        self.section_labels = tuple(section_labels)
        self.energy = energy
        self.peaks = {task: tuple(values) for task, values in (peaks or {}).items()}
        self.train_config = dict(train_config or {})
        self.provenance = dict(provenance or {})
        for net in self.nets:
            if not isinstance(net, NumpyHeads):
                net.eval()

    @property
    def input_dim(self) -> int:
        return self.nets[0].input_dim

    def predict(self, embeddings: np.ndarray, frames_per_second: float) -> Activations:
        """Per-frame probabilities of one whole track's ``(frames, dim)`` embeddings."""
        if abs(frames_per_second - self.frames_per_second) > 1e-6:
            raise ValueError(
                f"embeddings at {frames_per_second} fps, heads trained at "
                f"{self.frames_per_second} fps (backbone {self.backbone_key!r})"
            )
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.input_dim:
            raise ValueError(
                f"expected (frames, {self.input_dim}) embeddings of backbone "
                f"{self.backbone_key!r}, got {embeddings.shape}"
            )
        if all(isinstance(net, NumpyHeads) for net in self.nets):
            return predict_numpy(self.nets, embeddings, self.frames_per_second, self.section_labels)
        from edm.heads.train import predict_probabilities

        return predict_probabilities(
            self.nets, embeddings, self.frames_per_second, self.section_labels
        )

    def predict_energy(
        self,
        embeddings: np.ndarray,
        descriptors: Mapping[str, np.ndarray] | None,
        sections: Sequence[Section | tuple[float, float]],
        frames_per_second: float,
    ) -> list[EnergyData]:
        """Energy of each section (all sections of one track, ``(start_s, end_s)`` or Section).

        Raises ValueError when the folder has no energy head.
        """
        if self.energy is None:
            raise ValueError("these heads have no energy head (no energy targets when fitted)")
        return self.energy.predict_sections(embeddings, descriptors, sections, frames_per_second)

    def save(
        self,
        model_dir: str | Path,
        *,
        metrics: Mapping[str, Any] | None = None,
        oof: Mapping[str, Activations] | None = None,
    ) -> Path:
        """Write the folder (see the module docstring); returns its path."""
        folder = Path(model_dir)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {
            f"net{index}.{name}": np.ascontiguousarray(value)
            for index, net in enumerate(self.nets)
            for name, value in _state(net).items()
        }
        save_numpy(tensors, str(folder / WEIGHTS_FILE))
        energy_config = self.energy.save(folder) if self.energy is not None else None
        from edm import __version__

        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "edm_version": __version__,
            "backbone": {
                "key": self.backbone_key,
                "name": self.backbone_name,
                "options": self.backbone_options,
                "frames_per_second": self.frames_per_second,
                "dim": self.input_dim,
            },
            "model": self.nets[0].config(),
            "n_nets": len(self.nets),
            "section_labels": list(self.section_labels),
            "peaks": {task: list(values) for task, values in self.peaks.items()},
            "train": self.train_config,
            "energy": energy_config,
            "provenance": self.provenance,
        }
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
        if metrics is not None:
            (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True))
        if oof is not None:
            save_oof(oof, folder / OOF_FILE)
        return folder


def _state(net: TemporalHeads | FinetunedHeads | NumpyHeads) -> dict[str, np.ndarray]:
    """A net's weights as numpy arrays (the safetensors file is the same either way)."""
    if isinstance(net, NumpyHeads):
        return net.weights
    return {name: value.detach().cpu().numpy() for name, value in net.state_dict().items()}


def read_config(folder: Path) -> dict[str, Any]:
    """A heads folder's ``config.json``, checked; :class:`ArtifactError` names what is wrong."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise ArtifactError(f"{folder}: not a heads folder (no {CONFIG_FILE})")
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{path}: cannot read ({error})") from error
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not an edm heads config (format is not {FORMAT!r})")
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: format_version {config['format_version']} is newer than this edm"
        )
    return config


def load_heads(model_dir: str | Path) -> Heads:
    """Rebuild :class:`Heads` from a folder written by :meth:`Heads.save`.

    Raises :class:`ArtifactError` naming the folder when it is missing pieces.
    """
    folder = Path(model_dir)
    config, states = load_net_states(folder)
    weights_path = folder / WEIGHTS_FILE
    nets: list[TemporalHeads | FinetunedHeads | NumpyHeads] = []
    for state in states:
        try:
            nets.append(_build(config["model"], state))
        except (RuntimeError, ValueError) as error:
            raise ArtifactError(
                f"{weights_path}: weights do not fit the config ({error})"
            ) from error
    energy = None
    if config.get("energy"):
        try:
            energy = EnergyHead.load(folder, config["energy"])
        except Exception as error:  # xgboost raises its own XGBoostError on a broken file
            raise ArtifactError(f"{folder}: cannot load the energy head ({error})") from error
    backbone = config["backbone"]
    return Heads(
        nets,
        backbone_key=backbone["key"],
        backbone_name=backbone.get("name"),
        backbone_options=backbone.get("options"),
        frames_per_second=float(backbone["frames_per_second"]),
        section_labels=tuple(config.get("section_labels", ())),
        energy=energy,
        peaks=config.get("peaks"),
        train_config=config.get("train"),
        provenance=config.get("provenance"),
    )


def load_net_states(model_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, np.ndarray]]]:
    """(config.json, one state dict of numpy arrays per net) of a heads folder, without
    building the nets: what a warm-started fit copies its weights from."""
    folder = Path(model_dir)
    config = read_config(folder)
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ArtifactError(f"{folder}: {WEIGHTS_FILE} is missing")
    weights = load_numpy(str(weights_path))
    states = []
    for index in range(int(config["n_nets"])):
        prefix = f"net{index}."
        states.append({k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)})
    return config, states


def _build(
    model: Mapping[str, Any], state: Mapping[str, np.ndarray]
) -> TemporalHeads | FinetunedHeads | NumpyHeads:
    """A plain TemporalHeads net as numpy (no torch import); a fine-tuned one as torch."""
    if "finetune" not in model:
        return NumpyHeads(model, state)
    import torch

    from edm.heads.finetune import build_net

    net = build_net(model)
    net.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    return net


def save_oof(oof: Mapping[str, Activations], path: str | Path) -> Path:
    """Out-of-fold activations → one safetensors file (``<track_id>/<task>`` arrays)."""
    rates = {a.frames_per_second for a in oof.values()}
    if len(rates) > 1:
        raise ValueError(f"out-of-fold activations at several frame rates: {sorted(rates)}")
    arrays: dict[str, np.ndarray] = {}
    labels: tuple[str, ...] = ()
    for track_id, activations in oof.items():
        for task in EVENT_TASKS:
            arrays[f"{track_id}/{task}"] = np.ascontiguousarray(getattr(activations, task))
        if activations.section is not None:
            arrays[f"{track_id}/section"] = np.ascontiguousarray(activations.section)
            labels = activations.section_labels
    metadata = {
        "frames_per_second": repr(float(next(iter(rates)))) if rates else "0",
        "section_labels": json.dumps(list(labels)),
    }
    save_numpy(arrays, str(path), metadata=metadata)
    return Path(path)


def load_oof(model_dir: str | Path) -> dict[str, Activations]:
    """Track id → out-of-fold :class:`Activations` from a heads folder ({} without k-fold)."""
    folder = Path(model_dir)
    path = folder / OOF_FILE if folder.is_dir() else folder
    if not path.is_file():
        if not (folder / CONFIG_FILE).is_file():
            raise ArtifactError(f"{folder}: not a heads folder (no {CONFIG_FILE})")
        return {}
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata() or {}
    fps = float(metadata.get("frames_per_second", "0"))
    labels = tuple(json.loads(metadata.get("section_labels", "[]")))
    arrays = load_numpy(str(path))
    track_ids = sorted({key.rsplit("/", 1)[0] for key in arrays})
    return {
        track_id: Activations(
            beat=arrays[f"{track_id}/beat"],
            downbeat=arrays[f"{track_id}/downbeat"],
            boundary=arrays[f"{track_id}/boundary"],
            frames_per_second=fps,
            section=arrays.get(f"{track_id}/section"),
            section_labels=labels if f"{track_id}/section" in arrays else (),
        )
        for track_id in track_ids
    }
