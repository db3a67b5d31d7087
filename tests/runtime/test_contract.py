"""The contract is declared once (runtime/contract.py) and everything else agrees with it."""
from __future__ import annotations

import re

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
