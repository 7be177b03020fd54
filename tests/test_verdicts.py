"""The README's verdict tables: claims matched by text across the quick and the full run."""

from experiments import common, verdicts


def summary(*claims, seconds=90.0):
    return {"seconds": seconds, "claims": [common.claim(text, deck, "a slide", held, "numbers")
                                           for text, deck, held in claims]}


def test_claims_are_matched_by_text_and_missing_ones_show_a_dash():
    quick = summary(("b", "S1", None), ("a", "S3", True), ("only quick", "S0", False))
    full = summary(("a", "S3", True), ("b", "S1", False), seconds=600.0)
    assert verdicts.rows(quick, full) == [["a", "S3", "held", "held"], ["b", "S1", "not judged", "**did not hold**"],
                                          ["only quick", "S0", "**did not hold**", "–"]]
    text = verdicts.table("lesson", quick, full)
    assert text.startswith("**lesson** (quick 1.5 min, full 10.0 min)") and text.count("\n| ") == 4


def test_the_command_prints_a_table_per_experiment_with_results(tmp_path, capsys):
    for root, held in (("quick", None), ("full", True)):
        common.write_summary(tmp_path / root / "optimizers", summary(("a claim", "S1", held)))
    assert verdicts.main([str(tmp_path / "quick"), str(tmp_path / "full")]) == 0
    out = capsys.readouterr().out
    assert "**optimizers** (quick 1.5 min, full 1.5 min)" in out and "| a claim | S1 | not judged | held |" in out
    assert "**depth**" not in out  # no results: no table


def test_the_headline_counts_held_among_the_judged_claims():
    claims = [{"held": True}, {"held": False}, {"held": None}, {"held": True}]
    assert common.claims_headline(claims, "depth") == "2/3 of the judged claims on depth held (1 not judged)"
