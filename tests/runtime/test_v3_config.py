"""Contract v3's config (ModelConfig with the chain's fields: order, head_hidden, controls_into)
and the v3 binning rule (float32 thresholds), which gives v2's bins away from the edges."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mpx.runtime import bins
from mpx.runtime.config import ModelConfig
from mpx.runtime.errors import OptionsError


def test_config_holds_the_chain() -> None:
    assert set(ModelConfig().to_dict()) == {f.name for f in dataclasses.fields(ModelConfig)}
    assert {"order", "head_hidden", "controls_into"} <= set(ModelConfig().to_dict())


def test_chain_config_round_trips_through_json_form() -> None:
    config = ModelConfig(hidden=32, order=("pitch", "step", "duration", "velocity"), controls_into="both")
    raw = config.to_dict()
    assert raw["order"] == ["pitch", "step", "duration", "velocity"]
    assert ModelConfig.from_dict(raw) == config
    with pytest.raises(OptionsError, match="config lacks"):
        ModelConfig.from_dict({k: v for k, v in raw.items() if k != "order"})


@pytest.mark.parametrize("changes, message", [
    ({"order": ("step", "step", "duration", "velocity")}, "order must name each of"),
    ({"controls_into": "everywhere"}, "controls_into must be heads, lstm or both"),
    ({"head_hidden": 0}, "head_hidden"),
    ({"hidden": 0}, "hidden"),
])
def test_chain_config_names_the_bad_field(changes: dict, message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        ModelConfig(**changes)


def v2_index(config: ModelConfig, notes: np.ndarray) -> np.ndarray:
    """Contract v2's binning rule, floor((z - shift) / scale), as the reference."""
    out = []
    for i, b in enumerate(bins.of(config)):
        values = notes[..., i].astype(np.float64)
        if b.time:
            z = np.log(np.maximum(values, 0.0) + bins.TIME_OFFSET)
        else:
            z = np.rint(values) if not b.within else values
        k = np.floor((z - b.shift) / b.scale) if b.within else z - b.shift
        out.append(np.clip(k, 0, b.count - 1).astype(np.int64))
    return np.stack(out, -1)


def test_threshold_bins_equal_v2_bins_away_from_the_edges() -> None:
    config = ModelConfig(step_bins=48, duration_bins=40, velocity_bins=16)
    rng = np.random.default_rng(0)
    n = 20_000
    notes = np.stack([rng.integers(-3, 131, n), rng.exponential(0.3, n), rng.exponential(1.0, n) * 3,
                      rng.integers(1, 128, n)], -1).astype(np.float32)
    notes[: n // 10, 1:3] = -0.5  # negative times fall in bin 0
    notes[n // 10: n // 5, 1:3] = 1e4  # beyond the last edge: the last bin
    assert np.array_equal(bins.index(config, notes), v2_index(config, notes))
    # a pitch halfway between two integers rounds up by the thresholds
    assert bins.index(config, np.array([[60.5, 0, 0, 64]], np.float32))[0, 0] == 61
    table = bins.thresholds(config)
    assert table.shape == (4, 127) and np.isinf(table[1, 47:]).all() and np.isfinite(table[1, :47]).all()
