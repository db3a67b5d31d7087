"""The contract is declared once (runtime/contract.py) and everything else agrees with it."""
from __future__ import annotations

import re
from pathlib import Path

from mpx.runtime import contract

from conftest import ROOT


def test_readme_shows_the_contract_table_generated_from_the_declaration() -> None:
    readme = (ROOT / "README.md").read_text()
    shown = re.search(r"<!-- contract table: generated from runtime/contract.py -->\n(.*?)\n<!-- end of contract table -->",
                      readme, re.S)
    assert shown, "README has no generated contract table"
    assert shown.group(1).strip() == contract.markdown_table()


def test_outputs_tuple_follows_the_declared_order() -> None:
    assert contract.Outputs._fields == tuple(contract.OUTPUTS)
    axes = contract.dynamic_axes()
    assert set(axes) == set(contract.INPUTS) | set(contract.OUTPUTS)
    assert axes["notes"] == {0: "batch", 1: "time"} and axes["h0"] == {1: "batch"}


def test_a_contract_v2_file_is_refused_in_one_line_naming_its_contract(tmp_path: Path) -> None:
    """A v2 file's spec (what mpx reads first) as v2 wrote it: spec_version 2, v2's inputs."""
    import pytest

    from damage import edit_spec
    from mpx.runtime.errors import MpxError
    from mpx.runtime.formats import open_backend

    def as_v2(spec: dict) -> None:
        spec.update(spec_version=2, inputs=["notes", "h0", "c0", "uniforms", "temperature", "top_p"])
    old = edit_spec(ROOT / "artifacts" / "music_producter.onnx", tmp_path / "music_producter.onnx", as_v2)
    with pytest.raises(MpxError) as caught:
        open_backend(old)
    message = str(caught.value)
    assert "\n" not in message and "follows graph contract v2; this mpx runs v3" in message
    assert str(old) in message
