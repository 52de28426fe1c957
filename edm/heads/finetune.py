"""Fine-tuning MERT's top layers together with the heads (``edm fit-heads --finetune-top N``).

The store keeps the hidden states of layer ``L - N`` (``edm embed --backbone mert --layers L-N``);
training puts the checkpoint's top ``N`` transformer layers (``encoder.layers[L-N:L]`` of a
:class:`transformers.HubertModel`, no remote code) in front of the temporal heads and updates
both, so the conv front end and the lower layers still run only once, at embed time.

MERT-v1 is the post-norm HuBERT variant (``do_stable_layer_norm`` false): hidden state ``l+1``
is exactly ``layers[l](hidden state l)``, with no encoder-level norm after the last layer, so
the top layers applied to stored layer ``L - N`` reproduce layer ``L``. The pre-norm variant
applies a final norm that the stored hidden states do not show; it is refused.

Attention runs over non-overlapping windows of ``window_s`` (the last window is moved back to
end at the last frame, so no window is padded): memory stays bounded on whole tracks.

A saved folder holds the layers' weights next to the heads' and the HuBERT config in
``config.json``, so loading needs neither the checkpoint nor ``transformers``' hub access.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from edm.heads.model import TemporalHeads


class FinetuneError(ValueError):
    """A store or checkpoint that cannot be fine-tuned; the message names it."""


@dataclass(frozen=True)
class FinetuneSpec:
    """What ``--finetune-top`` fine-tunes; stored as ``TrainConfig.finetune``."""

    checkpoint: str
    top: int
    layer: int  # the stored hidden state: depth - top
    depth: int
    window_s: float = 30.0
    learning_rate: float = 1e-4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _hubert_config(config: Mapping[str, Any]) -> Any:
    from transformers import HubertConfig

    hubert = HubertConfig(**dict(config))
    hubert._attn_implementation = "sdpa"  # the same kernel for training and for a loaded folder
    return hubert


@functools.lru_cache(maxsize=2)
def _checkpoint_layers(checkpoint: str, first: int, top: int) -> tuple[dict[str, Any], dict]:
    """(HuBERT config dict, state dict of ``encoder.layers[first:first+top]``), read once per fit
    (k-fold builds a fresh copy of the layers for every fold)."""
    from transformers import HubertModel

    try:
        model = HubertModel.from_pretrained(checkpoint, local_files_only=True)
    except OSError as error:
        raise FinetuneError(
            f"{checkpoint}: cannot load the MERT checkpoint the store was embedded with ({error})"
        ) from error
    config = model.config
    if config.do_stable_layer_norm:
        raise FinetuneError(
            f"{checkpoint}: pre-norm HuBERT (do_stable_layer_norm) applies a final norm the "
            "stored hidden states lack; --finetune-top supports post-norm models such as MERT-v1"
        )
    layers = nn.ModuleList(model.encoder.layers[first : first + top])
    state = {name: value.detach().clone() for name, value in layers.state_dict().items()}
    return config.to_dict(), state


class TopLayers(nn.Module):
    """HuBERT encoder layers applied window by window to ``(batch, frames, hidden)`` states."""

    def __init__(self, hubert_config: Mapping[str, Any], n_layers: int, window_frames: int):
        super().__init__()
        from transformers.models.hubert.modeling_hubert import HubertEncoderLayer

        config = _hubert_config(hubert_config)
        self.layers = nn.ModuleList(HubertEncoderLayer(config) for _ in range(n_layers))
        self.window_frames = max(1, int(window_frames))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, n_frames, dim = x.shape
        width = min(self.window_frames, n_frames)
        starts = [*range(0, n_frames - width, width), n_frames - width]
        hidden = torch.stack([x[:, s : s + width] for s in starts], 1).reshape(-1, width, dim)
        for layer in self.layers:
            hidden = layer(hidden)
        hidden = hidden.reshape(batch, len(starts), width, dim)
        # The last window overlaps the one before it; keep only its new frames.
        done = 0
        pieces = []
        for index, start in enumerate(starts):
            pieces.append(hidden[:, index, done - start :])
            done = start + width
        return torch.cat(pieces, dim=1)


class FinetunedHeads(nn.Module):
    """Top transformer layers → :class:`TemporalHeads`; takes the stored ``(batch, dim, frames)``
    hidden states of layer ``L - N`` like a plain :class:`TemporalHeads` takes embeddings."""

    def __init__(
        self, spec: Mapping[str, Any], hubert_config: Mapping[str, Any], heads: TemporalHeads
    ) -> None:
        super().__init__()
        self.spec = dict(spec)
        self.hubert_config = dict(hubert_config)
        window = round(float(self.spec["window_s"]) * heads.frames_per_second)
        self.top = TopLayers(self.hubert_config, int(self.spec["top"]), window)
        self.heads = heads

    @property
    def input_dim(self) -> int:
        return self.heads.input_dim

    def config(self) -> dict[str, Any]:
        return {"finetune": self.spec, "hubert": self.hubert_config, "heads": self.heads.config()}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.top(x.transpose(1, 2)).transpose(1, 2))

    def set_input_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.heads.set_input_stats(mean, std)

    def features(self, embeddings: np.ndarray) -> np.ndarray:
        """``(frames, dim)`` stored states → the top layers' output (what the heads see)."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))[None]
            out = self.top(x)[0].numpy()
        self.train(was_training)
        return out

    def parameter_groups(self, learning_rate: float) -> list[dict[str, Any]]:
        """Heads at ``learning_rate``; the pretrained layers at the spec's smaller rate."""
        return [
            {"params": list(self.heads.parameters()), "lr": learning_rate},
            {"params": list(self.top.parameters()), "lr": float(self.spec["learning_rate"])},
        ]


def finetuned_net(spec: Mapping[str, Any], heads: TemporalHeads) -> FinetunedHeads:
    """A :class:`FinetunedHeads` whose layers start from the checkpoint's weights."""
    hubert_config, state = _checkpoint_layers(
        str(spec["checkpoint"]), int(spec["layer"]), int(spec["top"])
    )
    net = FinetunedHeads(spec, hubert_config, heads)
    net.top.layers.load_state_dict(state)
    return net


def build_net(config: Mapping[str, Any]) -> TemporalHeads | FinetunedHeads:
    """Rebuild a net from its saved ``config()`` (weights are loaded by the caller)."""
    if "finetune" in config:
        heads = TemporalHeads.from_config(dict(config["heads"]))
        return FinetunedHeads(config["finetune"], config["hubert"], heads)
    return TemporalHeads.from_config(dict(config))


def finetune_spec(store: Any, track_id: str, backbone_key: str, top: int) -> FinetuneSpec:
    """Check that ``backbone_key`` holds MERT hidden states of layer ``L - top`` (no projection,
    one layer) and say what to fine-tune; :class:`FinetuneError` names the store otherwise."""
    info = store.backbone_info(track_id, backbone_key)
    where = f"{store.path}: backbone {backbone_key!r}"
    if info.name != "mert" or not info.checkpoint:
        raise FinetuneError(f"{where} is {info.name!r}; --finetune-top needs a MERT store key")
    layers = list(info.layers or [])
    if len(layers) != 1 or (info.config or {}).get("projection"):
        raise FinetuneError(
            f"{where} averages or projects layers; --finetune-top needs one unprojected layer"
        )
    from transformers import HubertConfig

    try:
        depth = int(
            HubertConfig.from_pretrained(info.checkpoint, local_files_only=True).num_hidden_layers
        )
    except OSError as error:
        raise FinetuneError(f"{where}: checkpoint {info.checkpoint} not found ({error})") from error
    if not 1 <= top <= depth:
        raise FinetuneError(f"--finetune-top {top}: {info.checkpoint} has {depth} layers")
    if layers[0] != depth - top:
        raise FinetuneError(
            f"{where} stores layer {layers[0]}; --finetune-top {top} needs layer {depth - top} "
            f"(edm embed --backbone mert --layers {depth - top})"
        )
    return FinetuneSpec(checkpoint=str(info.checkpoint), top=top, layer=layers[0], depth=depth)
