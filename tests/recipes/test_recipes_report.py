"""The report's recipes section: who no other recipe beats, with a noise check."""

from dtmerge.report.sections.recipes import RecipePoint, undominated_sentence


def test_undominated_recipes_and_the_noise_check():
    pts = [RecipePoint("dtm", 0.6, 0.01, 0.8, 0.01), RecipePoint("sft", 0.5, 0.01, 0.6, 0.01),
           RecipePoint("l2", 0.4, 0.01, 0.9, 0.01), RecipePoint("replay", 0.59, 0.05, 0.79, 0.05)]
    text, front = undominated_sentence(pts)
    assert front == ["dtm", "l2"]
    assert text.startswith("No other recipe beats dtm, l2 on both")
    assert "sft is beaten on both axes by dtm, beyond noise." in text
    assert "replay is below dtm on both axes, but within noise" in text
