"""Regenerate the bad-input table of docs/reliability.md from the tests' actual messages.

Run from the repository root: ``python scripts/bad_input_table.py`` (``--check`` only
reports whether the doc is current). The cases live in tests/test_reliability_bad_input.py.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- bad-input-table:begin -->"
END = "<!-- bad-input-table:end -->"


def main(argv: list[str]) -> int:
    """Rewrite (or ``--check``) the table between the markers."""
    sys.path.insert(0, str(ROOT))
    warnings.simplefilter("ignore")
    from tests.test_reliability_bad_input import DOC, render_table

    table = render_table()
    block = f"{BEGIN}\n{table}\n{END}"
    text = DOC.read_text()
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + block + text[stop:]
    if "--check" in argv:
        print("current" if new == text else "stale")
        return 0 if new == text else 1
    DOC.write_text(new)
    print(f"wrote {len(table.splitlines()) - 2} rows to {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
