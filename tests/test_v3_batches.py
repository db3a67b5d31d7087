"""conditioned_batch (train/batches.py), the batches of the contract v3 model (docs/v3-model.md):
the inputs and targets of `gather` plus the controls of every position (the summaries of the
notes that follow it in its file), exact under transposition, dropped per lane and group, and
describing the notes of the lanes whose character changes."""
from __future__ import annotations

import numpy as np

from mpx.runtime import controls as ctl
from mpx.runtime.config import ModelConfig
from mpx.train.batches import CONTROL_GROUPS, LaneDraws, LanePlanner, conditioned_batch, gather, given_mask

CONFIG = ModelConfig(hidden=8, embedding=4, step_bins=16, duration_bins=16, velocity_bins=8)


def files(rng: np.random.Generator, sizes: list[int]) -> list[np.ndarray]:
    return [np.column_stack([rng.integers(40, 90, n), rng.exponential(0.1, n) * (rng.random(n) < 0.6),
                             rng.exponential(0.3, n), rng.integers(20, 110, n)]).astype(np.float32)
            for n in sizes]


def test_inputs_targets_and_the_controls_of_every_position() -> None:
    planner = LanePlanner.of_notes(files(np.random.default_rng(0), [150, 90, 40]), 32, 3, reset_prob=0.0)
    plan = planner.plan(None)
    checked = 0
    for s in range(plan.steps):
        x, y, mask, k = conditioned_batch(planner.data, plan.starts[s], plan.lengths[s], plan.ends[s], 32, CONFIG)
        gx, gy, gm = gather(planner.data, plan.starts[s], plan.lengths[s], 32, CONFIG)
        assert np.array_equal(mask, gm)
        real = mask > 0
        assert np.array_equal(x[real], gx[real]) and np.array_equal(y[real], gy[real])
        for lane in range(plan.starts.shape[1]):
            at, end = int(plan.starts[s, lane]), int(plan.ends[s, lane])
            for t in range(int(plan.lengths[s, lane])):
                following = planner.data[at + t + 1:min(at + t + 1 + ctl.WINDOW, end)]
                assert np.array_equal(k[lane, t], ctl.summaries(following))
                checked += 1
    assert checked == 150 + 90 + 40 - 3


def test_transposed_chunks_have_transposed_controls() -> None:
    planner = LanePlanner.of_notes(files(np.random.default_rng(1), [200, 200]), 64, 2, reset_prob=0.0)
    plan = planner.plan(None)
    args = (planner.data, plan.starts[0], plan.lengths[0], plan.ends[0], 64, CONFIG)
    x, y, _, k = conditioned_batch(*args)
    xs, ys, _, ks = conditioned_batch(*args, shifts=np.array([3, -2]))
    for lane, shift in enumerate((3, -2)):
        assert np.array_equal(xs[lane, :, 0], x[lane, :, 0] + shift)
        assert np.array_equal(ys[lane, :, 0], y[lane, :, 0] + shift)
        assert np.array_equal(ks[lane, :, 2], k[lane, :, 2] + shift)               # pitch_mean
        assert np.array_equal(ks[lane, :, 6:], np.roll(k[lane, :, 6:], shift, -1))  # the profile
        unchanged = [0, 1, 3, 4, 5]
        assert np.array_equal(ks[lane, :, unchanged], k[lane, :, unchanged])


def test_controls_are_dropped_per_lane_and_group() -> None:
    mask = given_mask(np.random.default_rng(2), 4000)
    for columns in CONTROL_GROUPS:  # a group is given or not as a whole (the profile: a key)
        assert (mask[:, list(columns)] == mask[:, [columns[0]]]).all()
    assert 0.25 < mask.all(1).mean() < 0.40 and 0.25 < (~mask).all(1).mean() < 0.40
    planner = LanePlanner.of_notes(files(np.random.default_rng(3), [300] * 8), 32, 8, reset_prob=0.0)
    plan = planner.plan(None)
    _, _, _, k = conditioned_batch(planner.data, plan.starts[0], plan.lengths[0], plan.ends[0], 32, CONFIG,
                                   draws=LaneDraws.draw(np.random.default_rng(4), 8, 32, 0.0))
    given = k >= 0
    assert (given == given[:, :1]).all()  # every position of a lane's chunk alike


def test_changed_lanes_are_described_by_their_controls() -> None:
    seq_len = 128
    planner = LanePlanner.of_notes(files(np.random.default_rng(5), [400] * 16), seq_len, 16, reset_prob=0.0)
    plan = planner.plan(None)
    args = (planner.data, plan.starts[0], plan.lengths[0], plan.ends[0], seq_len, CONFIG)
    plain, _, _, _ = conditioned_batch(*args)
    x, _, _, k = conditioned_batch(*args, draws=LaneDraws.draw(np.random.default_rng(6), 16, seq_len, 1.0))
    for lane in range(16):
        given = k[lane, 0] >= 0
        if not given.any():  # a change the model could not know of never happens
            assert np.array_equal(x[lane], plain[lane])
        for t in range(seq_len - ctl.WINDOW):
            want = ctl.summaries(x[lane, t + 1:t + 1 + ctl.WINDOW])
            assert np.array_equal(k[lane, t][given], want[given])
    assert not np.array_equal(x, plain)
