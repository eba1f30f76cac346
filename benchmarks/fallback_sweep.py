"""How robust is the Game of 24 search's ``fallback_share``: a sweep and a 2-fold cross-validation.

``POLICY.fallback_share`` (1/3) was chosen by a sweep on the same 100 puzzles the headline
reports. This script measures that choice on the recorded replay, exactly as
``budget-graph bench game24`` runs it (:func:`budget_graph.bench.game24.run`, one value
cache per (share, budget) job, puzzles in order):

1. **Sweep.** ``budget-search`` (judge + verifier + one-number check) at the headline
   budget grid (:data:`~budget_graph.bench.game24.BUDGET_FRACTIONS` of ``tot-bfs``'s mean
   tokens per puzzle) for each share in :data:`SHARES` (``none``: no fallback), with the
   solved count and the billed share of ``tot-bfs``'s tokens per budget, and the headline's
   ``s67`` / ``s68`` per share.
2. **2-fold cross-validation.** The 100 puzzles are split by a fixed seeded shuffle
   (:func:`split_halves`, seed :data:`SEED`) into halves A and B. A half's numbers are its
   puzzles' records from the 100-puzzle runs of step 1 (the runs the headline reports);
   "share" on a half is the search's billed tokens over ``tot-bfs``'s billed tokens on the
   same puzzles. The selection rule, stated before any result was seen
   (:func:`choose`): on the training half, among all (share, budget) cells, take the one
   with the smallest billed share of ``tot-bfs``'s tokens at which the search solves at
   least as many of the half's puzzles as ``tot-bfs-5`` does on that half; ties go to the
   smaller fallback share (``none`` smallest), then the smaller budget. If no cell
   reaches ``tot-bfs-5``, the cell solving most (then fewest tokens) is taken. The chosen
   (share, budget) cell is then read on the held-out half and compared with ``tot-bfs-5``
   on that half. Fold 1 chooses on A and holds out B; fold 2 the reverse.

Every number printed is measured in this run. The last line::

    cv: fold1 share=<s> budget=<f>x heldout_solved=<n>/<N> bfs5=<m>/<N> heldout_share=<p>
        bfs5_share=<q> ; fold2 ...

(one line), where ``heldout_share`` and ``bfs5_share`` are percent of ``tot-bfs``'s billed
tokens on the held-out half.

Run (from a clean clone, with the dev install): ``python benchmarks/fallback_sweep.py``
(about 6 minutes of CPU over ``--workers`` processes, default up to 2; 693 s wall on 2
cores shared with other jobs). Its output is quoted in docs/planner.md.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from budget_graph.bench import game24
from budget_graph.bench.jobs import resolve_budgets
from budget_graph.efficiency import RunRecord

__all__ = ["SEED", "SHARES", "Cell", "cells", "choose", "label", "main", "split_halves"]

SHARES: tuple[float | None, ...] = (None, 0.2, 0.25, 0.3, 1 / 3, 0.4, 0.5)
"""Fallback shares swept (``None``: no fallback, give up when nothing clears the floors)."""
SEED = 24
"""Seed of the shuffle that splits the puzzles into the two folds."""
BASELINE = "tot-bfs-5"
"""The baseline a chosen cell must match: ToT BFS-5 with the headline's value tools."""


@dataclass(frozen=True, slots=True)
class Cell:
    """One (fallback share, budget) of the search on a set of puzzles."""

    share: float | None
    budget: int
    solved: int
    tokens: int


def label(share: float | None) -> str:
    """``none``, ``1/3`` or the share as written (``0.25``)."""
    if share is None:
        return "none"
    return "1/3" if abs(share - 1 / 3) < 1e-9 else f"{share:g}"


def split_halves(ids: Iterable[str], seed: int = SEED) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Two disjoint halves of ``ids`` (sorted within each), from a seeded shuffle."""
    order = sorted(set(ids))
    random.Random(seed).shuffle(order)
    half = len(order) // 2
    return tuple(sorted(order[:half])), tuple(sorted(order[half:]))


def cells(runs: Mapping[float | None, Sequence[RunRecord]], ids: Iterable[str]) -> list[Cell]:
    """The (share, budget) cells of the search restricted to the puzzles ``ids``."""
    keep = set(ids)
    out = []
    for share, records in runs.items():
        by_budget: dict[int, list[RunRecord]] = {}
        for r in records:
            if r.item in keep and r.budget is not None:
                by_budget.setdefault(r.budget, []).append(r)
        for budget, rs in sorted(by_budget.items()):
            solved = sum(r.correct for r in rs)
            out.append(Cell(share, budget, solved, sum(r.total_tokens for r in rs)))
    return out


def choose(candidates: Sequence[Cell], target: int) -> Cell:
    """The cell chosen by the pre-stated rule (see the module docstring).

    Fewest billed tokens among the cells solving at least ``target``; ties: smaller share
    (``None`` first), then smaller budget. With no such cell, the most solved (then fewest
    tokens).

    Raises:
        ValueError: No candidates.

    """
    if not candidates:
        raise ValueError("No cells to choose from (candidates is empty)")
    enough = [c for c in candidates if c.solved >= target]
    if enough:
        return min(enough, key=lambda c: (c.tokens, c.share or 0.0, c.budget))
    return min(candidates, key=lambda c: (-c.solved, c.tokens, c.share or 0.0, c.budget))


def _tokens(records: Sequence[RunRecord], ids: Iterable[str]) -> tuple[int, int]:
    keep = set(ids)
    rs = [r for r in records if r.item in keep]
    return sum(r.correct for r in rs), sum(r.total_tokens for r in rs)


def _pct(tokens: int, ref: int) -> float:
    return 100 * tokens / ref


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep and the cross-validation; print the tables and the ``cv:`` line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    args = ap.parse_args(argv)
    wall, cpu = time.perf_counter(), _cpu_s()

    refs = game24.run([game24.REFERENCE, BASELINE], workers=args.workers)
    tot = [r for r in refs if r.method == game24.REFERENCE]
    bfs5 = [r for r in refs if r.method == BASELINE]
    ids = [r.item for r in tot]
    mean = sum(r.total_tokens for r in tot) / len(tot)
    fractions = game24.BUDGET_FRACTIONS
    levels = resolve_budgets(None, fractions, lambda: mean)
    frac_of = dict(zip(levels, fractions, strict=True))

    runs: dict[float | None, list[RunRecord]] = {}
    for share in SHARES:
        policy = replace(game24.POLICY, fallback_share=share)
        runs[share] = game24.run(
            [game24.HEADLINE], budget_tokens=levels, policy=policy, workers=args.workers
        )
        print(f"share {label(share)} done ({time.perf_counter() - wall:.0f} s)", file=sys.stderr)

    n = len(ids)
    _, ref_all = _tokens(tot, ids)
    solved5, tok5 = _tokens(bfs5, ids)
    print(f"Game of 24, {n} puzzles, budget-search (tools: check) by fallback_share")
    print(
        f"tot-bfs: {_tokens(tot, ids)[0]}/{n}, {ref_all:,} billed tokens; "
        f"{BASELINE}: {solved5}/{n} at {_pct(tok5, ref_all):.1f}%"
    )
    print("cells: solved/N and billed % of tot-bfs's tokens; budgets in tokens per puzzle")
    print("| share | " + " | ".join(f"{frac_of[b]:g}x ({b:,})" for b in levels) + " |")
    print("| --- |" + " ---: |" * len(levels))
    for share, row in ((s, cells({s: runs[s]}, ids)) for s in SHARES):
        parts = [f"{c.solved}/{n} {_pct(c.tokens, ref_all):.1f}%" for c in row]
        print(f"| {label(share)} | " + " | ".join(parts) + " |")
    fronts = []
    for share in SHARES:
        both = [*tot, *runs[share]]
        s = [game24.frontier(both, solved=k) for k in (67, 68)]
        fronts.append(
            f"{label(share)}: s67={'none' if s[0] is None else f'{s[0]:.1f}'} "
            f"s68={'none' if s[1] is None else f'{s[1]:.1f}'}"
        )
    print("sweep frontier_billed: " + " ; ".join(fronts))

    halves = split_halves(ids)
    summary = []
    for fold, (train, held) in enumerate([halves, halves[::-1]], start=1):
        _, ref_train = _tokens(tot, train)
        _, ref_held = _tokens(tot, held)
        target, tok5_train = _tokens(bfs5, train)
        pick = choose(cells(runs, train), target)
        held_cells = {(c.share, c.budget): c for c in cells(runs, held)}
        out = held_cells[(pick.share, pick.budget)]
        solved5_held, tok5_held = _tokens(bfs5, held)
        nt, nh = len(train), len(held)
        print(
            f"fold{fold}: chosen on {nt} puzzles (tot-bfs-5 {target}/{nt} at "
            f"{_pct(tok5_train, ref_train):.1f}%): share={label(pick.share)} "
            f"budget={frac_of[pick.budget]:g}x solved={pick.solved}/{nt} at "
            f"{_pct(pick.tokens, ref_train):.1f}%; held-out {nh}: solved={out.solved}/{nh} at "
            f"{_pct(out.tokens, ref_held):.1f}% vs tot-bfs-5 {solved5_held}/{nh} at "
            f"{_pct(tok5_held, ref_held):.1f}%"
        )
        best_held = []
        for share in SHARES:
            ok = [c for c in held_cells.values() if c.share == share and c.solved >= solved5_held]
            low = min((c.tokens for c in ok), default=None)
            best_held.append(
                f"{label(share)}={'none' if low is None else f'{_pct(low, ref_held):.1f}'}"
            )
        print(
            f"fold{fold} held-out: smallest % reaching tot-bfs-5, by share: " + " ".join(best_held)
        )
        summary.append(
            f"fold{fold} share={label(pick.share)} budget={frac_of[pick.budget]:g}x "
            f"heldout_solved={out.solved}/{nh} bfs5={solved5_held}/{nh} "
            f"heldout_share={_pct(out.tokens, ref_held):.1f} "
            f"bfs5_share={_pct(tok5_held, ref_held):.1f}"
        )
    print(
        f"runtime: {time.perf_counter() - wall:.0f} s wall, "
        f"{_cpu_s() - cpu:.0f} s CPU (this process and its workers)"
    )
    print("cv: " + " ; ".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
