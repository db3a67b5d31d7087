"""Model, loss, training loop, checkpoints, resume, determinism, `mpx train`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mpx.runtime.errors import ArtifactError
from mpx.runtime.config import ModelConfig
from mpx.runtime.spec import ModelSpec
from mpx.train import checkpoint
from mpx.train.batches import LanePlanner
from mpx.train.cache import NoteCache
from mpx.train.corpus import Corpus, load_corpus
from mpx.train.loop import LAST, Interrupted, Trainer, train
from mpx.train.options import TrainOptions
from mpx.train.loss import LossWeights, note_loss, positive_pressure_mse
from mpx.train.model import NoteLSTM

from conftest import MIDI_DIR, run_cli

TINY = dict(model=ModelConfig(hidden=16), batch_size=4, seq_len=32, seed=3)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return load_corpus([MIDI_DIR], cache=NoteCache(tmp_path_factory.mktemp("cache")), workers=1)


def weights_of(path: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(path).state_dict


@pytest.mark.parametrize("kwargs", [{}, {"pitch_input": "embedding", "embedding": 8, "layers": 2}])
def test_forward_follows_the_graph_contract(kwargs: dict) -> None:
    model = NoteLSTM(ModelConfig(hidden=24, **kwargs))
    notes = torch.tensor([[[60.0, 0.1, 0.5]] * 7] * 3)
    h0, c0 = model.zero_state(3)
    logits, step, duration, hn, cn = model(notes, h0, c0)
    layers = kwargs.get("layers", 1)
    assert logits.shape == (3, 7, 128) and step.shape == duration.shape == (3, 7)
    assert hn.shape == cn.shape == h0.shape == (layers, 3, 24)
    # the state carries: running 7 notes at once equals 3 then 4 with the state handed over
    first = model(notes[:, :3], h0, c0)
    second = model(notes[:, 3:], first[3], first[4])
    torch.testing.assert_close(second[0], logits[:, 3:], atol=1e-6, rtol=0)
    torch.testing.assert_close(second[3], hn, atol=1e-6, rtol=0)


def test_raw_pitch_is_normalised_inside_the_model() -> None:
    model = NoteLSTM(ModelConfig(hidden=8))
    notes = torch.tensor([[[64.0, 0.25, 1.5]]])
    torch.testing.assert_close(model.encode(notes), torch.tensor([[[0.5, 0.25, 1.5]]]))
    embedded = NoteLSTM(ModelConfig(hidden=8, pitch_input="embedding", embedding=4))
    features = embedded.encode(notes)
    torch.testing.assert_close(features[0, 0, :4], embedded.pitch_embedding.weight[64])
    torch.testing.assert_close(features[0, 0, 4:], torch.tensor([0.25, 1.5]))


def test_loss_is_cross_entropy_on_raw_logits_plus_positive_pressure() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 128) * 4
    step = torch.tensor([[-0.5, 0.1, 0.2, 0.3, 0.0]] * 2)
    duration = torch.full((2, 5), 0.4)
    target = torch.stack([torch.randint(0, 128, (2, 5)).float(), torch.full((2, 5), 0.1), torch.full((2, 5), 0.5)], -1)
    mask = torch.ones(2, 5)
    total, parts = note_loss(logits, step, duration, target, mask, LossWeights(0.05, 1.0, 1.0))
    expected_ce = F.cross_entropy(logits.reshape(-1, 128), target[..., 0].long().reshape(-1))
    torch.testing.assert_close(parts["pitch"], expected_ce)
    assert positive_pressure_mse(torch.tensor(-0.5), torch.tensor(0.1)) == pytest.approx(0.36 + 5.0)
    torch.testing.assert_close(total, 0.05 * parts["pitch"] + parts["step"] + parts["duration"])
    # masked positions do not count
    mask[:, 3:] = 0
    _, masked = note_loss(logits, step, duration, target, mask, LossWeights())
    torch.testing.assert_close(masked["pitch"], F.cross_entropy(logits[:, :3].reshape(-1, 128), target[:, :3, 0].long().reshape(-1)))


def test_lanes_cover_every_prediction_once_in_evaluation_order() -> None:
    files = [np.zeros((n, 3), np.float32) for n in (5, 70, 33, 1, 129)]
    planner = LanePlanner(files, seq_len=32, batch_size=3, reset_prob=0.0)
    plan = planner.plan(None)
    assert plan.predictions == sum(n - 1 for n in (5, 70, 33, 129))
    covered = []
    for s in range(plan.steps):
        for lane in range(plan.starts.shape[1]):
            covered.extend(range(plan.starts[s, lane], plan.starts[s, lane] + plan.lengths[s, lane]))
    assert sorted(covered) == sorted(set(covered)) and len(covered) == plan.predictions
    shuffled = planner.plan(np.random.default_rng(0))
    assert shuffled.predictions == plan.predictions
    # a chunk that follows a short (padded) chunk in a lane always starts from a zero state
    for lane in range(shuffled.starts.shape[1]):
        for s in range(1, shuffled.steps):
            if 0 < shuffled.lengths[s - 1, lane] < 32:
                assert shuffled.resets[s, lane]


@pytest.mark.slow
def test_same_seed_same_data_gives_the_same_weights(corpus: Corpus, tmp_path: Path) -> None:
    a = train(corpus, tmp_path / "a", TrainOptions(epochs=1, **TINY))
    b = train(corpus, tmp_path / "b", TrainOptions(epochs=1, **TINY))
    c = train(corpus, tmp_path / "c", TrainOptions(epochs=1, **{**TINY, "seed": 4}))
    wa, wb, wc = weights_of(a.last), weights_of(b.last), weights_of(c.last)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_validation_loss_falls_over_epochs(corpus: Corpus, tmp_path: Path) -> None:
    result = train(corpus, tmp_path, TrainOptions(model=ModelConfig(hidden=32), epochs=4, batch_size=8, seq_len=64, seed=0))
    losses = [row["val_loss"] for row in result.history]
    assert losses[-1] < losses[0]
    best = checkpoint.load(result.best)
    assert best.spec.metrics["val"]["val_loss"] == pytest.approx(min(losses))


def test_resume_after_an_interruption_reaches_the_uninterrupted_weights(corpus: Corpus, tmp_path: Path) -> None:
    # dropout and transposition draw random numbers: resuming must continue their streams too
    options = TrainOptions(epochs=2, transpose=4, **{**TINY, 'model': ModelConfig(hidden=16, dropout=0.2)})
    straight = train(corpus, tmp_path / "straight", options)

    calls = {"n": 0}
    stop = {"stop": False}

    def interrupt_midway(done: int, total: int, loss: float) -> None:
        calls["n"] += 1
        if calls["n"] == 5:  # Ctrl-C lands during epoch 1, batch 5
            stop["stop"] = True

    trainer = Trainer(corpus, tmp_path / "resumed", options, stop=stop, on_step=interrupt_midway)
    with pytest.raises(Interrupted, match="--resume"):
        trainer.run()
    saved = checkpoint.load(tmp_path / "resumed" / LAST).progress
    assert (saved["epoch"], saved["step"]) == (0, 5)
    resumed = train(corpus, tmp_path / "resumed", TrainOptions(epochs=2), resume=True)  # options come from the checkpoint
    w1, w2 = weights_of(straight.last), weights_of(resumed.last)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert [r["val_loss"] for r in straight.history] == [r["val_loss"] for r in resumed.history]


def test_resume_on_other_data_is_refused(corpus: Corpus, tmp_path: Path) -> None:
    train(corpus, tmp_path, TrainOptions(epochs=1, **TINY))
    fewer = load_corpus([MIDI_DIR], max_files=4, cache=NoteCache(tmp_path / "c"), workers=1)
    with pytest.raises(Exception, match="other data"):
        train(fewer, tmp_path, TrainOptions(epochs=2), resume=True)


def test_a_crash_while_saving_leaves_the_old_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = NoteLSTM(ModelConfig(hidden=8))
    spec = ModelSpec(config=model.config)
    path = checkpoint.save(tmp_path / "best.safetensors", spec, model.state_dict())
    before = path.read_bytes()

    def torn_write(tensors: dict, filename: str, metadata: dict) -> None:
        Path(filename).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_file", torn_write)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, spec, NoteLSTM(ModelConfig(hidden=8)).state_dict())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.safetensors"]


def test_checkpoint_loading_refuses_bad_files(tmp_path: Path) -> None:
    model = NoteLSTM(ModelConfig(hidden=8))
    good = checkpoint.save(tmp_path / "good.safetensors", ModelSpec(config=model.config), model.state_dict())
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:300])
    from safetensors.torch import save_file
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    reshaped = checkpoint.save(tmp_path / "reshaped.safetensors", ModelSpec(config=ModelConfig(hidden=9)),
                               model.state_dict())
    for path, message in [(tmp_path / "none.safetensors", "no such checkpoint"),
                          (truncated, "not a readable"), (foreign, "no mpx spec")]:
        with pytest.raises(ArtifactError, match=message):
            checkpoint.load(path)
    with pytest.raises(ArtifactError, match="shape"):
        checkpoint.load_model(reshaped)


def test_cli_train_writes_a_checkpoint_that_loads(tmp_path: Path) -> None:
    result = run_cli("train", str(MIDI_DIR), "--epochs", "1", "--hidden", "16", "--batch-size", "4",
                     "--out", str(tmp_path / "run"), env={"MPX_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert "epoch   1" in result.stdout and "best checkpoint" in result.stdout
    model, spec = checkpoint.load_model(tmp_path / "run" / "best.safetensors")
    assert spec.config.hidden == 16 and isinstance(model, NoteLSTM)


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["nowhere/"], "no such file, directory or pattern"),
    ([str(MIDI_DIR), "--hidden", "0"], "hidden must be an integer 1..4096"),
    ([str(MIDI_DIR), "--resume"], "nothing to resume"),
    ([str(MIDI_DIR), "--pitch-weight", "nan"], "--pitch-weight must be a number"),
    ([str(MIDI_DIR), "--max-files", "0"], "--max-files must be >= 1"),
])
def test_cli_train_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("train", *args, "--out", str(tmp_path / "run"))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_checkpoints_get_ordinary_file_permissions(tmp_path: Path) -> None:
    import os
    import stat
    model = NoteLSTM(ModelConfig(hidden=8))
    path = checkpoint.save(tmp_path / "m.safetensors", ModelSpec(config=model.config), model.state_dict())
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_log_timing_model_and_loss() -> None:
    from mpx.train.loss import log_mse
    model = NoteLSTM(ModelConfig(hidden=8, timing="log"))
    notes = torch.tensor([[[60.0, 0.0, 0.5], [64.0, 0.25, 2.0]]])
    features = model.encode(notes)
    torch.testing.assert_close(features[..., 1:], torch.log(notes[..., 1:] + 0.01))
    _, step, duration, _, _ = model(notes, *model.zero_state(1))
    assert (step > -0.01).all() and (duration > -0.01).all()  # exp(head) - 0.01
    # the loss sees chord steps (5 ms) and run steps (60 ms) far apart; seconds MSE hardly does
    chord, run = torch.tensor([0.005]), torch.tensor([0.06])
    assert log_mse(chord, run) > 2.0 and positive_pressure_mse(chord, run) < 0.01
    assert log_mse(run, run) == 0


def test_calibration_tables_are_ordered_quantiles(tiny_checkpoint: Path) -> None:
    from mpx.train.calibrate import BINS, LEVELS
    timing = checkpoint.load(tiny_checkpoint).spec.timing  # calibrated at the end of training
    for name in ("step", "duration"):
        edges, ratios = np.array(timing[name]["edges"]), np.array(timing[name]["ratios"])
        assert edges.shape == (BINS - 1,) and ratios.shape == (BINS, LEVELS)
        assert (np.diff(edges) >= 0).all() and (np.diff(ratios, axis=1) >= 0).all() and (ratios >= 0).all()
