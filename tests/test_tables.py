import pandas as pd

from middo_core.tables import best_cells


def test_best_score_respects_direction_and_ignores_counts():
    table = pd.DataFrame(
        {0: [1.9, 0.20, 1096.0], 1: [0.4, 0.35, 1096.0], 2: [0.5, 0.30, 1096.0]},
        index=["heldout / loss", "demo_exact / exact_match", "heldout / tokens"],
    )
    best = best_cells(table)
    assert best.loc["heldout / loss"].tolist() == [False, True, False]  # lowest loss wins
    assert best.loc["demo_exact / exact_match"].tolist() == [False, True, False]  # highest accuracy
    assert not best.loc["heldout / tokens"].any()  # a count is not a score
