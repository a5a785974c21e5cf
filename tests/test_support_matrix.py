"""The README's support matrix is what scripts/support_matrix.py makes, so it cannot drift: a row for every method
of cfg/kd/, a column for every pair, each reason on its own line; and the columns of the two offline default pairs
(the quickstart's, digits'), recomputed here (small models: seconds), hold the same verdicts and reasons. The
CIFAR-sized columns take a few minutes on 2 cores: `python scripts/support_matrix.py --readme` remakes them all."""
from __future__ import annotations

import re
from pathlib import Path

from scripts import support_matrix
from tests.helpers import METHODS

README = Path(__file__).resolve().parent.parent / "README.md"
FIX = "README's support matrix is stale: run python scripts/support_matrix.py --readme"


def readme_matrix() -> tuple[list[str], dict[str, list[str]], dict[str, str]]:
    """(column headers, cells by method, reasons by mark) of the README's block."""
    lines = support_matrix.readme_section(README.read_text()).strip().splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")][1:]
    rows = {}
    for line in lines[2:]:
        if not line.startswith("| `"):
            break
        name, *cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[name.strip("`")] = cells
    reasons = dict(re.findall(r"^- (\(\d+\)) (.+)$", "\n".join(lines), flags=re.MULTILINE))
    return header, rows, reasons


def test_readme_matrix_has_every_method_and_pair():
    header, rows, reasons = readme_matrix()
    assert header == [pair.header for pair in support_matrix.PAIRS], FIX
    assert list(rows) == METHODS, FIX
    marks = {mark for cells in rows.values() for cell in cells if cell != "✓" for mark in [cell.removeprefix("✗ ")]}
    assert marks == set(reasons), FIX  # every mark explained, on its own line
    assert support_matrix.NOTE in README.read_text()


def test_readme_matrix_of_the_offline_pairs_is_what_the_code_gives():
    header, rows, reasons = readme_matrix()
    for pair in support_matrix.PAIRS[:2]:
        column = header.index(pair.header)
        for method in METHODS:
            verdict = support_matrix.one_step(method, pair)
            shown = rows[method][column]
            assert (shown == "✓") == (verdict == "ok") and (verdict == "ok" or reasons[shown[2:]] == verdict), \
                f"{method} on {pair.header}: README says {shown}, the code {verdict}; {FIX}"
