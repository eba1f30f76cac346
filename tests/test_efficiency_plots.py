import pytest

from budget_graph.efficiency import RunRecord, write_report
from budget_graph.efficiency.plots import (
    plot_anytime,
    plot_pareto,
    plot_tokens_per_solved,
    write_plots,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def records():
    out = []
    for method, budget, gen in [("tot", None, 900), ("planner", 300, 250), ("planner", 600, 500)]:
        for i in range(6):
            ok = i % 2 == 0 or method == "tot"
            out.append(
                RunRecord(
                    task="game 24/x",
                    item=str(i),
                    method=method,
                    budget=budget,
                    correct=ok,
                    prompt_tokens=3 * gen,
                    generated_tokens=gen + i,
                    anytime=[(gen // 2, 0.0), (gen + i, float(ok))],
                )
            )
    return out


def is_png(path):
    return path.exists() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000


def test_each_plot_writes_a_png(records, tmp_path):
    assert is_png(plot_pareto(records, tmp_path / "p.png", kind="total"))
    assert is_png(plot_anytime(records, tmp_path / "a.png", budgets=[100, 500, 1000]))
    assert is_png(plot_tokens_per_solved(records, tmp_path / "h.png"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "h.png", "p.png"]


def test_plots_handle_no_solved_and_single_point(tmp_path):
    recs = [RunRecord(task="t", item="1", method="m", correct=False, generated_tokens=10)]
    assert is_png(plot_tokens_per_solved(recs, tmp_path / "h.png"))
    assert is_png(plot_pareto(recs, tmp_path / "p.png"))
    assert is_png(plot_anytime(recs, tmp_path / "a.png"))


def test_write_plots_names_files_per_task(records, tmp_path):
    paths = write_plots(tmp_path, records, tokens_for={"game 24/x": "total"})
    assert [p.name for p in paths] == [
        "game_24_x_pareto.png",
        "game_24_x_anytime.png",
        "game_24_x_tokens_per_solved.png",
    ]
    assert all(is_png(p) for p in paths)


def test_write_report_writes_three_pngs(records, tmp_path):
    paths = write_report(tmp_path, records)
    pngs = [p for name, p in paths.items() if name.endswith(".png")]
    assert len(pngs) == 3 and all(is_png(p) for p in pngs)
