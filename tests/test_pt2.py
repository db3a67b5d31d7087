"""torch.export (.pt2) and AOTInductor packages (mpx.export.pt2) against the TorchScript module.

Every output within atol 1e-5 + rtol 1e-5 * |value| at B in {1, 3} and T in {1, 25, 300}
(T stays dynamic: ScanLSTM); the same sampled notes over 256 notes; the AOTInductor C++
program's notes equal the TorchScript C++ program's. The AOTInductor package is compiled once
per session (tens of seconds to minutes on this CPU), the C++ programs come from test_cpp.py's
session build.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed: pt2 export needs it")

import contract_v2_stub as stub  # noqa: E402
from mpx.export import pt2  # noqa: E402
from mpx.export.errors import ExportError, ParityError  # noqa: E402
from test_cpp import (assert_same_notes, cpp_programs, like_cpp, once, primer, primers,  # noqa: E402,F401
                      read_csv, run_program, torchscript_model, v2_model)

ATOL = RTOL = 1e-5
ROLLOUT = 256
OUTPUTS = ("next_note", "hn", "cn", "logits")


# -- artifacts, once per session ---------------------------------------------------------------
@pytest.fixture(scope="session")
def scripted(torchscript_model: Path) -> Any:
    return torch.jit.load(str(torchscript_model))


@pytest.fixture(scope="session")
def exported(v2_model: tuple[Any, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    module, spec = v2_model
    return once("pt2", lambda: pt2.save_exported_program(
        module, spec, tmp_path_factory.mktemp("pt2") / "music_producter.pt2"))


@pytest.fixture(scope="session")
def aoti_package(v2_model: tuple[Any, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    module, spec = v2_model
    return once("aoti", lambda: pt2.save_aoti_package(
        module, spec, tmp_path_factory.mktemp("aoti") / "music_producter.aoti.pt2"))


def inputs(batch: int, time: int, seed: int, zero_state: bool = False) -> tuple[Any, ...]:
    example = pt2.example_inputs(batch, time, stub.LAYERS, stub.H, seed=seed)
    if zero_state:
        example = (example[0], torch.zeros_like(example[1]), torch.zeros_like(example[2]), *example[3:])
    return example


def assert_close(got: Any, want: Any, label: str) -> float:
    """Every output within ATOL + RTOL * |want|; returns the worst absolute difference."""
    worst = 0.0
    for name, a, b in zip(OUTPUTS, got, want):
        assert a.shape == b.shape, f"{label} {name}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
        diff = (a - b).abs()
        worst = max(worst, float(diff.max()))
        assert bool((diff <= ATOL + RTOL * b.abs()).all()), f"{label} {name}: off by {float(diff.max()):.3g}"
    return worst


def check_against_scripted(graph: pt2.Pt2Graph, scripted: Any, label: str) -> None:
    worst = 0.0
    for batch in (1, 3):
        for time in (1, 25, 300):
            for zero in (True, False):
                args = inputs(batch, time, seed=batch * 1000 + time, zero_state=zero)
                with torch.inference_mode(), like_cpp():
                    worst = max(worst, assert_close(graph(*args), scripted(*args), f"{label} B={batch} T={time}"))
    print(f"\n{label} vs TorchScript: worst |difference| {worst:.3g}")


def sampled_notes(step: Any, primer_csv: Path, seed: int) -> np.ndarray:
    with like_cpp():
        return stub.generate(step, step.zero_state(1), read_csv(primer_csv), ROLLOUT, seed,
                             [1.0, 0.8, 0.8, 1.0], [0.95, 0.9, 0.9, 0.95])


# -- ScanLSTM: nn.LSTM's numbers with a dynamic time axis ----------------------------------------------
@pytest.mark.parametrize("layers,batch_first,bias", [(1, True, True), (2, True, True), (2, False, False)])
def test_scan_lstm_matches_nn_lstm(layers: int, batch_first: bool, bias: bool) -> None:
    torch.manual_seed(layers)
    lstm = torch.nn.LSTM(7, 16, layers, batch_first=batch_first, bias=bias).eval()
    scan = pt2.ScanLSTM(lstm)
    for time in (1, 9):
        x = torch.randn(3, time, 7) if batch_first else torch.randn(time, 3, 7)
        state = (torch.randn(layers, 3, 16), torch.randn(layers, 3, 16))
        with torch.no_grad(), like_cpp():
            (y, (h, c)), (y2, (h2, c2)) = lstm(x, state), scan(x, state)
        for a, b in ((y2, y), (h2, h), (c2, c)):
            assert a.shape == b.shape
            assert float((a - b).abs().max()) <= 1e-5


# -- torch.export --------------------------------------------------------------------------------------
def test_exported_program_parity(exported: Path, scripted: Any, v2_model: tuple[Any, str]) -> None:
    graph, spec = pt2.load_exported_program(exported)
    assert graph.dynamic_time, "T was specialised: the scan formulation did not hold"
    assert json.loads(spec) == json.loads(v2_model[1])
    check_against_scripted(graph, scripted, "pt2")


def test_exported_program_sampled_notes(exported: Path, scripted: Any, primers: dict[str, Path]) -> None:
    graph, _ = pt2.load_exported_program(exported)
    for seed, name in enumerate(sorted(primers)[:3]):
        want = sampled_notes(scripted, primers[name], seed)
        assert_same_notes(sampled_notes(graph, primers[name], seed), want, f"pt2 {name} seed {seed}")


def test_time_axis_fallback_primes_note_by_note(v2_model: tuple[Any, str], scripted: Any, primer: Path,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module whose LSTM export cannot keep dynamic (here: ScanLSTM switched off, so nn.LSTM
    specialises T) is exported with T = 1, and fed the primer one note per call."""
    monkeypatch.setattr(pt2, "supports", lambda lstm: False)
    module, spec = v2_model
    graph, _ = pt2.load_exported_program(pt2.save_exported_program(module, spec, tmp_path / "t1.pt2"))
    assert not graph.dynamic_time
    args = inputs(3, 25, seed=5)
    with torch.inference_mode(), like_cpp():
        assert_close(graph(*args), scripted(*args), "T=1 graph over 25 notes")
    with like_cpp():
        whole = stub.generate(scripted, scripted.zero_state(1), read_csv(primer), 64, 1, [1.0] * 4, [0.95] * 4)
        by_note = stub.generate(graph, graph.zero_state(1), read_csv(primer), 64, 1, [1.0] * 4, [0.95] * 4,
                                whole_primer=False)
    assert_same_notes(by_note, whole, "primed note by note")


def test_parity_failure_keeps_nothing(v2_model: tuple[Any, str], exported: Path) -> None:
    module, _ = v2_model
    other = stub.Graph().eval()  # other random weights: the artifact must disagree with it
    graph, _ = pt2.load_exported_program(exported)
    with pytest.raises(ParityError, match="differs from eager"):
        pt2.check_parity(other, graph, True, "mismatch")


def test_loaders_name_bad_files(tmp_path: Path, primer: Path) -> None:
    with pytest.raises(ExportError, match=str(primer)):
        pt2.load_exported_program(primer)
    with pytest.raises(ExportError, match="no such"):
        pt2.load_aoti_package(tmp_path / "nowhere.pt2")
    with pytest.raises(ExportError, match="config.layers"):
        pt2.save_exported_program(stub.Graph(), "{}", tmp_path / "x.pt2")
    assert not (tmp_path / "x.pt2").exists()


# -- AOTInductor -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_aoti_parity(aoti_package: Path, scripted: Any) -> None:
    graph, spec = pt2.load_aoti_package(aoti_package)
    assert graph.dynamic_time
    assert json.loads(spec)["config"] == {"hidden": stub.H, "layers": stub.LAYERS}
    check_against_scripted(graph, scripted, "AOTInductor")


@pytest.mark.slow
def test_aoti_metadata_holds_sampling_defaults(aoti_package: Path) -> None:
    from torch._inductor.package import load_package
    metadata = load_package(str(aoti_package)).get_metadata()
    assert [float(v) for v in metadata[pt2.META_TEMPERATURE].split(",")] == stub.DEFAULT_TEMPERATURE
    assert [float(v) for v in metadata[pt2.META_TOP_P].split(",")] == stub.DEFAULT_TOP_P
    assert metadata[pt2.TIME_KEY] == "dynamic"


@pytest.mark.slow
def test_aoti_sampled_notes(aoti_package: Path, scripted: Any, primers: dict[str, Path]) -> None:
    graph, _ = pt2.load_aoti_package(aoti_package)
    for seed, name in enumerate(sorted(primers)[:3]):
        want = sampled_notes(scripted, primers[name], seed)
        assert_same_notes(sampled_notes(graph, primers[name], seed), want, f"AOTInductor {name} seed {seed}")


@pytest.mark.slow
@pytest.mark.parametrize("temperature", ["1", "0.7", "0"])
def test_aoti_cpp_equals_torchscript_cpp(cpp_programs: dict[str, Path], torchscript_model: Path,
                                         aoti_package: Path, primers: dict[str, Path], tmp_path: Path,
                                         temperature: str) -> None:
    for seed, name in enumerate(sorted(primers)[:2]):
        flags = ("--notes", str(ROLLOUT), "--seed", str(seed), "--temperature", temperature, "--top-p", "0.9")
        runs = {}
        for kind, model in (("torchscript", torchscript_model), ("aoti", aoti_package)):
            out = tmp_path / f"{kind}.csv"
            done = run_program(cpp_programs[kind], model, primers[name], out, *flags)
            assert done.returncode == 0, done.stderr
            runs[kind] = read_csv(out)
        assert_same_notes(runs["aoti"], runs["torchscript"], f"C++ AOTInductor vs TorchScript, {name}, T {temperature}")


@pytest.mark.slow
def test_aoti_cpp_errors_are_one_line(cpp_programs: dict[str, Path], torchscript_model: Path, primer: Path,
                                      tmp_path: Path) -> None:
    """A TorchScript file given to the AOTInductor program: one line naming it, no output."""
    out = tmp_path / "out.csv"
    done = run_program(cpp_programs["aoti"], torchscript_model, primer, out)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(torchscript_model) in lines[0], done.stderr
    assert not out.exists()
