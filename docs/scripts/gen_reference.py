"""Generate one API reference page per public module of budget_graph (run by mkdocs-gen-files)."""

from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "budget_graph"

nav = mkdocs_gen_files.Nav()
for path in sorted(PACKAGE.rglob("*.py")):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if any(p.startswith("_") and p != "__init__" for p in parts) or "data" in parts:
        continue  # private modules (``_internal``, ``_model_call``...) and recorded data
    if parts[-1] == "__init__":
        parts = parts[:-1]
    ident = ".".join(parts)
    doc_path = Path("reference", *parts).with_suffix(".md")
    if path.name == "__init__.py":
        doc_path = Path("reference", *parts, "index.md")
    nav[tuple(parts)] = doc_path.relative_to("reference").as_posix()
    with mkdocs_gen_files.open(doc_path, "w") as fd:
        fd.write(f"# `{ident}`\n\n::: {ident}\n")
    mkdocs_gen_files.set_edit_path(doc_path, path.relative_to(ROOT))

with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as nav_file:
    nav_file.writelines(nav.build_literate_nav())
