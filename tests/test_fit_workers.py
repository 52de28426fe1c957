"""Training speed parts (issue 18): fits in worker processes, progress reports, cheap dropout."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from edm.data.schema import Tier
from edm.heads.model import _Dropout
from edm.heads.train import EpochReport, TrainConfig, fit_data_parallel, fit_kfold, fit_model
from tests.heads_toy import toy_set

torch.set_num_threads(1)  # workers train with one thread: the same numbers as this process

FAST = {"channels": 16, "coarse_layers": 6}


def test_workers_train_the_models_one_process_trains():
    tracks, _ = toy_set(range(6), duration_s=20.0)
    config = TrainConfig(epochs=3, batch_size=4, crop_s=10.0, model=FAST)
    events: dict[str, list[EpochReport]] = defaultdict(list)
    parallel = fit_kfold(
        tracks,
        config,
        folds=3,
        final=True,
        workers=2,
        progress_for=lambda stage: events[stage].append,
    )
    serial = fit_kfold(tracks, config, folds=3, final=True, workers=1)
    assert set(parallel.oof) == set(serial.oof) == {t.track_id for t in tracks}
    for track_id, activations in serial.oof.items():
        np.testing.assert_allclose(parallel.oof[track_id].beat, activations.beat, atol=1e-6)
        np.testing.assert_allclose(parallel.oof[track_id].boundary, activations.boundary, atol=1e-6)
    assert parallel.final is not None and serial.final is not None
    probe = tracks[0].embeddings
    np.testing.assert_allclose(
        parallel.final.predict(probe).downbeat, serial.final.predict(probe).downbeat, atol=1e-6
    )
    # Every fit reported every epoch, in order, from its worker.
    assert sorted(events) == ["final", "fold 1/3", "fold 2/3", "fold 3/3"]
    for reports in events.values():
        assert [r.epoch for r in reports] == [1, 2, 3]
        assert all(r.epochs == 3 and r.validation_loss is None for r in reports)
        assert all(np.isfinite(r.loss) and r.seconds > 0 for r in reports)
    assert set(parallel.seconds) == set(events)
    assert all(s["cpu_s"] > 0 and s["train_s"] > 0 for s in parallel.seconds.values())


def test_tier1_tracks_validate_each_epoch():
    tracks, _ = toy_set(range(5), duration_s=20.0)
    verified, _ = toy_set(range(5, 7), duration_s=20.0, tier=Tier.VERIFIED)
    config = TrainConfig(epochs=2, batch_size=4, crop_s=10.0, model=FAST)
    events: dict[str, list[EpochReport]] = defaultdict(list)
    result = fit_kfold(
        [*tracks, *verified],
        config,
        folds=2,
        final=True,
        workers=1,
        progress_for=lambda stage: events[stage].append,
    )
    assert all(r.validation_loss is not None for r in events["final"])
    assert result.final is not None and len(result.final.validation_losses) == 2


def test_cheap_dropout_keeps_the_rate_and_the_mean():
    torch.manual_seed(0)
    layer = _Dropout(0.1)
    x = torch.ones(4, 32, 5000)
    y = layer(x)
    dropped = float((y == 0).float().mean())
    assert abs(dropped - 0.1) < 0.005
    assert abs(float(y.mean()) - 1.0) < 0.01
    assert set(torch.unique(y).tolist()) == {0.0, _kept_scale(0.1)}
    layer.eval()
    assert torch.equal(layer(x), x)


def _kept_scale(p: float) -> float:
    threshold = round(p * 32768)
    return float(torch.tensor(32768 / (32768 - threshold), dtype=torch.float32))


def test_data_parallel_fit_is_the_one_process_fit():
    # With no random draws (no augmentation, no dropout), two processes that split each batch
    # and average their gradients train the net one process trains on whole batches.
    tracks, _ = toy_set(range(6), duration_s=20.0)  # batches of 4 and 2: both split
    config = TrainConfig(
        epochs=4, batch_size=4, crop_s=10.0, model={**FAST, "dropout": 0.0}, augment=False
    )
    one = fit_model(tracks, config)
    parallel, seconds = fit_data_parallel(tracks, config, 2)
    np.testing.assert_allclose(parallel.losses, one.losses, rtol=2e-3)
    probe = tracks[0].embeddings
    np.testing.assert_allclose(parallel.predict(probe).beat, one.predict(probe).beat, atol=3e-3)
    assert seconds["cpu_s"] > 0 and len(parallel.losses) == 4
