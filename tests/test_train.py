"""Model, loss, training loop, checkpoints, resume, determinism, `mpx train`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mpx.runtime import bins, controls as ctl
from mpx.runtime.config import ModelConfig
from mpx.runtime.contract import LOGIT_PAD
from mpx.runtime.errors import ArtifactError
from mpx.runtime.spec import ModelSpec
from mpx.train import checkpoint
from mpx.train.batches import LanePlanner
from mpx.train.cache import NoteCache
from mpx.train.corpus import Corpus, load_corpus
from mpx.train.loop import Interrupted, Trainer, train
from mpx.train.rundir import LAST
from mpx.train.options import TrainOptions
from mpx.train.loss import note_loss, own_bins
from mpx.train.model import NoteLSTM
from mpx.train.options import LossWeights

from conftest import MIDI_DIR, run_cli

TINY = dict(model=ModelConfig(hidden=16, embedding=4), batch_size=4, seq_len=32, seed=3)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return load_corpus([MIDI_DIR], cache=NoteCache(tmp_path_factory.mktemp("cache")), workers=1)


def weights_of(path: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(path).state_dict


def _notes(batch: int, time: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, 128, (batch, time), generator=g).float(),
                        torch.rand(batch, time, generator=g) * 0.5, torch.rand(batch, time, generator=g),
                        torch.randint(1, 128, (batch, time), generator=g).float()], -1)


def _unset(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Controls not given and no attribute given: [B, C], [B, 4] of -1."""
    return torch.full((batch, ctl.C), -1.0), torch.full((batch, 4), -1.0)


@pytest.mark.parametrize("config", [ModelConfig(hidden=24, embedding=8),
                                    ModelConfig(hidden=24, embedding=8, layers=2, step_bins=16, velocity_bins=8,
                                                controls_into="both")])
def test_forward_follows_the_graph_contract(config: ModelConfig) -> None:
    model = NoteLSTM(config).eval()
    notes = _notes(3, 7)
    h0, c0 = model.zero_state(3)
    u, t, p = torch.rand(3, 8), torch.ones(3, 4), torch.full((3, 4), 0.9)
    controls, given = _unset(3)
    note, hn, cn, logits = model(notes, h0, c0, u, t, p, controls, given)
    assert note.shape == (3, 4) and logits.shape == (3, 7, 4, 128)
    assert hn.shape == cn.shape == h0.shape == (config.layers, 3, 24)
    # padded bins are LOGIT_PAD exactly: probability 0 after a softmax
    for a, n in enumerate(bins.counts(config)):
        assert (logits[..., a, n:] == LOGIT_PAD).all() and (logits[..., a, :n] > -100).all()
    # the state carries: running 7 notes at once equals 3 then 4 with the state handed over,
    # the first call given the fourth note (row t < T - 1 is conditioned on notes[t + 1])
    first = model(notes[:, :3], h0, c0, u, t, p, controls, notes[:, 3])
    torch.testing.assert_close(first[3], logits[:, :3], atol=1e-5, rtol=0)
    second = model(notes[:, 3:], first[1], first[2], u, t, p, controls, given)
    torch.testing.assert_close(second[3], logits[:, 3:], atol=1e-5, rtol=0)
    torch.testing.assert_close(second[1], hn, atol=1e-6, rtol=0)
    torch.testing.assert_close(second[0], note, atol=1e-5, rtol=0)  # drawn after the same last position


def test_notes_are_encoded_inside_the_model() -> None:
    model = NoteLSTM(ModelConfig(hidden=8, embedding=4))
    notes = torch.tensor([[[64.0, 0.25, 1.5, 80.0]]])
    features = model.encode(notes, torch.full((1, ctl.C), -1.0))  # controls go into the heads: unused here
    torch.testing.assert_close(features[0, 0, :4], model.pitch_embedding.weight[64])
    torch.testing.assert_close(features[0, 0, 4:], torch.log(torch.tensor([0.26, 1.51, 81.0])))


def test_loss_is_a_cross_entropy_per_attribute_on_its_own_bins() -> None:
    torch.manual_seed(0)
    config = ModelConfig(hidden=8, embedding=4, step_bins=10, duration_bins=20, velocity_bins=5)
    counts = bins.counts(config)
    logits = torch.randn(2, 5, 4, 128) * 4
    targets = torch.stack([torch.randint(0, n, (2, 5)) for n in counts], -1)
    mask = torch.ones(2, 5)
    weights = LossWeights(0.5, 1.0, 2.0, 1.0)
    total, parts = note_loss(own_bins(logits, counts), targets, mask, weights)
    for a, (name, n) in enumerate(zip(("pitch", "step", "duration", "velocity"), counts)):
        expected = F.cross_entropy(logits[..., a, :n].reshape(-1, n), targets[..., a].reshape(-1))
        torch.testing.assert_close(parts[name], expected)  # the padding is not part of the softmax
    torch.testing.assert_close(total, 0.5 * parts["pitch"] + parts["step"] + 2 * parts["duration"] + parts["velocity"])
    mask[:, 3:] = 0  # masked positions do not count
    _, masked = note_loss(own_bins(logits, counts), targets, mask, weights)
    torch.testing.assert_close(masked["step"], F.cross_entropy(logits[:, :3, 1, :10].reshape(-1, 10), targets[:, :3, 1].reshape(-1)))


def test_bins_map_values_to_their_bin_and_back() -> None:
    config = ModelConfig(hidden=8)
    step, duration, velocity = bins.of(config)[1:]
    assert step.index(np.array([0.0]))[0] == 0 and step.value(0, 0.999) < 0.0011  # the chord bin
    assert step.index(np.array([100.0]))[0] == config.step_bins - 1  # long pauses: the last bin
    values = np.array([0.003, 0.05, 0.1234, 0.5, 1.7, 3.9])
    back = step.value(step.index(values), 0.5)
    assert np.all(np.abs(np.log(back + 0.01) - np.log(values + 0.01)) <= step.scale / 2 + 1e-9)  # within half a bin
    assert velocity.index(np.array([1, 127]))[0] == 0 and velocity.index(np.array([127]))[0] == config.velocity_bins - 1
    assert set(velocity.value(np.arange(config.velocity_bins), 0.0).astype(int)) <= set(range(1, 128))
    assert velocity.value(config.velocity_bins - 1, 0.99999994) <= 127  # never 128
    edges = duration.edges()
    assert len(edges) == config.duration_bins + 1 and edges[0] == 0 and edges[-1] == pytest.approx(config.duration_max)


def test_lanes_cover_every_prediction_once_in_evaluation_order() -> None:
    files = [np.zeros((n, 4), np.float32) for n in (5, 70, 33, 1, 129)]
    planner = LanePlanner.of_notes(files, seq_len=32, batch_size=3, reset_prob=0.0)
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
    result = train(corpus, tmp_path, TrainOptions(model=ModelConfig(hidden=32, embedding=8), epochs=4, batch_size=8, seq_len=64, seed=0))
    losses = [row["val_loss"] for row in result.history]
    assert losses[-1] < losses[0]
    best = checkpoint.load(result.best)
    assert best.spec.metrics["val"]["val_loss"] == pytest.approx(min(losses))


def test_resume_after_an_interruption_reaches_the_uninterrupted_weights(corpus: Corpus, tmp_path: Path) -> None:
    # dropout and transposition draw random numbers: resuming must continue their streams too
    options = TrainOptions(epochs=2, transpose=4, **{**TINY, 'model': ModelConfig(hidden=16, embedding=4, dropout=0.2)})
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


def test_ctrl_c_in_a_validation_stops_it_saves_last_and_resumes_to_the_same_weights(corpus: Corpus, tmp_path: Path) -> None:
    options = TrainOptions(epochs=2, transpose=4, **{**TINY, 'model': ModelConfig(hidden=16, embedding=4, dropout=0.2)})
    straight = train(corpus, tmp_path / "straight", options)
    stop, validated = {"stop": False}, []

    def ctrl_c_in_the_first_validation(done: int, total: int) -> None:
        validated.append((done, total))
        stop["stop"] = True  # Ctrl-C lands after the first validation batch

    trainer = Trainer(corpus, tmp_path / "resumed", options, stop=stop, on_validate=ctrl_c_in_the_first_validation)
    with pytest.raises(Interrupted, match="interrupted in the validation of epoch 1; saved .*--resume"):
        trainer.run()
    assert len(validated) == 1 and validated[0][0] < validated[0][1]  # stopped at once, not after the split
    saved = checkpoint.load(tmp_path / "resumed" / LAST).progress
    assert saved["epoch"] == 0 and saved["step"] > 0 and saved["history"] == []  # the epoch trained, not validated
    resumed = train(corpus, tmp_path / "resumed", TrainOptions(epochs=2), resume=True)
    w1, w2 = weights_of(straight.last), weights_of(resumed.last)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert straight.history == resumed.history  # train losses too: the interrupted epoch's is kept in `last`


def test_ctrl_c_in_the_last_validation_is_not_ignored(corpus: Corpus, tmp_path: Path) -> None:
    import os
    import signal
    import time
    sent = []

    def ctrl_c(done: int, total: int) -> None:
        if not sent:
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, through train()'s handler

    with pytest.raises(Interrupted, match="in the validation of epoch 1"):
        train(corpus, tmp_path, TrainOptions(epochs=1, **TINY), on_validate=ctrl_c)
    assert time.monotonic() - sent[0] < 2
    assert checkpoint.load(tmp_path / LAST).progress["epoch"] == 0  # `last` saved; --resume validates again


def test_resume_on_other_data_is_refused(corpus: Corpus, tmp_path: Path) -> None:
    train(corpus, tmp_path, TrainOptions(epochs=1, **TINY))
    fewer = load_corpus([MIDI_DIR], max_files=4, cache=NoteCache(tmp_path / "c"), workers=1)
    with pytest.raises(Exception, match="other data"):
        train(fewer, tmp_path, TrainOptions(epochs=2), resume=True)


def test_a_crash_while_saving_leaves_the_old_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = NoteLSTM(ModelConfig(hidden=8, embedding=4))
    spec = ModelSpec(config=model.config)
    path = checkpoint.save(tmp_path / "best.safetensors", spec, model.state_dict())
    before = path.read_bytes()

    def torn_write(tmp: Path, target: Path) -> None:
        Path(tmp).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    from mpx.runtime import atomic
    monkeypatch.setattr(atomic, "_commit", torn_write)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, spec, NoteLSTM(ModelConfig(hidden=8, embedding=4)).state_dict())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.safetensors"]


def test_checkpoint_loading_refuses_bad_files(tmp_path: Path) -> None:
    model = NoteLSTM(ModelConfig(hidden=8, embedding=4))
    good = checkpoint.save(tmp_path / "good.safetensors", ModelSpec(config=model.config), model.state_dict())
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:300])
    from safetensors.torch import save_file
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    reshaped = checkpoint.save(tmp_path / "reshaped.safetensors", ModelSpec(config=ModelConfig(hidden=9, embedding=4)),
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


def test_one_file_of_ones_own_trains(tmp_path: Path, midi_files: list[Path]) -> None:
    result = run_cli("train", str(midi_files[0]), "--epochs", "1", "--hidden", "16", "--batch-size", "4",
                     "--out", str(tmp_path / "run"), env={"MPX_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert "validation: the last 10% of the notes of each of the 1 files" in result.stderr
    spec = checkpoint.load(tmp_path / "run" / "best.safetensors").spec
    assert spec.data["holdout"] == "tail" and spec.data["splits"]["val"]["files"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["nowhere/"], "no such file, directory or pattern"),
    ([str(MIDI_DIR), "--hidden", "0"], "hidden must be an integer 1..4096"),
    ([str(MIDI_DIR), "--resume"], "nothing to resume"),
    ([str(MIDI_DIR), "--pitch-weight", "nan"], "--pitch-weight must be a number"),
    ([str(MIDI_DIR), "--max-files", "0"], "--max-files must be an integer >= 1"),
])
def test_cli_train_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("train", *args, "--out", str(tmp_path / "run"))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_checkpoints_get_ordinary_file_permissions(tmp_path: Path) -> None:
    import os
    import stat
    model = NoteLSTM(ModelConfig(hidden=8, embedding=4))
    path = checkpoint.save(tmp_path / "m.safetensors", ModelSpec(config=model.config), model.state_dict())
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_padded_bins_keep_their_values_through_training(tiny_checkpoint: Path) -> None:
    model, spec = checkpoint.load_model(tiny_checkpoint)
    for i, a in enumerate(model.chain):
        rows = slice(i * 128 + bins.counts(spec.config)[a], (i + 1) * 128)
        assert (model.out_weight[rows] == 0).all() and (model.out_bias[rows] == LOGIT_PAD).all()


def test_training_scores_are_the_contracts_logits_without_the_padding() -> None:
    """Teacher forcing: training_scores with the real next notes' bins equal the graph's logits
    when the graph is given the real next note (every row teacher-forced)."""
    torch.manual_seed(0)
    config = ModelConfig(hidden=16, embedding=4, step_bins=10, duration_bins=20, velocity_bins=5)
    model = NoteLSTM(config).eval()
    seq = torch.rand(3, 8, 4) * torch.tensor([127.0, 1.0, 2.0, 126.0]) + torch.tensor([0.0, 0.0, 0.0, 1.0])
    notes, following = seq[:, :-1], seq[:, -1]
    h, c = model.zero_state(3)
    controls = torch.rand(3, ctl.C) * 2 - 0.5  # some given, some not
    targets = torch.from_numpy(bins.index(config, seq[:, 1:].numpy()))
    _, hn, cn, full = model(notes, h, c, torch.rand(3, 8), torch.ones(3, 4), torch.ones(3, 4), controls, following)
    own, hn2, cn2 = model.training_scores(notes, h, c, controls.unsqueeze(1).expand(-1, 7, -1), targets)
    assert [t.shape[-1] for t in own] == list(bins.counts(config))
    for a, t in enumerate(own_bins(full, bins.counts(config))):
        torch.testing.assert_close(own[a], t)
    torch.testing.assert_close(hn, hn2)
    torch.testing.assert_close(cn, cn2)
