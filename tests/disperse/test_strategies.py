"""The dispersal strategies on their own: random, kmeans, field."""

import pytest

from dtmerge.config import DisperseConfig
from dtmerge.disperse import STRATEGIES
from dtmerge.errors import ConfigError, DataError


def rec(instruction, response, **extra):
    return {"prompt": [{"role": "user", "content": instruction}],
            "completion": [{"role": "assistant", "content": response}], **extra}


def test_random_is_balanced_and_deterministic():
    records = [rec(f"q{i}", f"a{i}") for i in range(103)]
    random_split = STRATEGIES.get("random")
    cfg = DisperseConfig(strategy="random", num_portions=4, seed=3)
    first = random_split(records, cfg)
    assert first == random_split(records, cfg)
    sizes = [first.count(k) for k in range(4)]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 103
    assert first != random_split(records, cfg.model_copy(update={"seed": 4}))


COOKING = ["Whisk the eggs with butter and flour, then bake the cake in the oven.",
           "Simmer the tomato sauce with garlic and basil, then pour over pasta.",
           "Knead the bread dough, let it rise, and bake until the crust is golden.",
           "Chop onions and garlic, fry them in olive oil, add the rice and stock.",
           "Marinate the chicken in lemon and herbs, then roast it in the oven.",
           "Melt chocolate with butter and sugar, fold in eggs, bake the brownies."]
CODE = ["Define a Python function that returns the sum of a list using a loop.",
        "Use a dictionary to count word frequencies, then sort the keys in Python.",
        "Write a recursive function in Python that computes the factorial of n.",
        "Import the json module and parse the string into a Python dictionary.",
        "Create a class with an __init__ method and a function that returns a value.",
        "Iterate over the list with a for loop and append each item to a new list."]


@pytest.mark.parametrize("embed_on", ["response", "both"])
def test_kmeans_separates_two_topics(embed_on):
    records = [rec("Explain.", t, topic="cook") for t in COOKING]
    records += [rec("Explain.", t, topic="code") for t in CODE]
    kmeans_split = STRATEGIES.get("kmeans")
    labels = kmeans_split(records, DisperseConfig(strategy="kmeans", num_portions=2, embed_on=embed_on))
    cook, code = set(labels[:6]), set(labels[6:])
    assert len(cook) == 1 and len(code) == 1 and cook != code


def test_kmeans_on_instruction_uses_the_prompt():
    records = [rec(t, "Sure.") for t in COOKING + CODE]
    labels = STRATEGIES.get("kmeans")(records, DisperseConfig(num_portions=2, embed_on="instruction"))
    assert len(set(labels[:6])) == 1 and set(labels[:6]) != set(labels[6:])


def test_sentence_transformer_encoder_without_package_says_how_to_install():
    pytest.importorskip("sklearn")
    try:
        import sentence_transformers  # noqa: F401
        pytest.skip("sentence-transformers is installed")
    except ImportError:
        pass
    records = [rec("q", t) for t in COOKING]
    with pytest.raises(ConfigError, match=r"dtmerge\[embed\]"):
        STRATEGIES.get("kmeans")(records, DisperseConfig(num_portions=2, encoder="all-MiniLM-L6-v2"))


def test_field_groups_by_column_in_sorted_value_order():
    records = [rec("q", "a", source=s) for s in ["b", "a", "c", "a", "b"]]
    labels = STRATEGIES.get("field")(records, DisperseConfig(strategy="field", num_portions=3, field="source"))
    assert labels == [1, 0, 2, 0, 1]


def test_field_errors_name_the_column_and_the_fix():
    records = [rec("q", "a", source=s) for s in ["x", "y", "z"]]
    field_split = STRATEGIES.get("field")
    with pytest.raises(DataError, match=r"'origin'.*columns present: \['source'\]"):
        field_split(records, DisperseConfig(num_portions=3, field="origin"))
    with pytest.raises(DataError, match="3 distinct values.*num_portions is 4.*at most 3"):
        field_split(records, DisperseConfig(num_portions=4, field="source"))


def test_field_bins_more_values_than_portions_into_balanced_whole_groups():
    # TULU-like: 11 sources of uneven size into K=4; a source is never split.
    sizes = [50, 40, 30, 25, 20, 15, 12, 10, 8, 5, 3]
    records = [rec("q", "a", source=f"s{i:02d}") for i, n in enumerate(sizes) for _ in range(n)]
    labels = STRATEGIES.get("field")(records, DisperseConfig(strategy="field", num_portions=4, field="source"))
    by_source = {}
    for r, label in zip(records, labels):
        by_source.setdefault(r["source"], set()).add(label)
    assert all(len(v) == 1 for v in by_source.values())
    portion_sizes = [labels.count(p) for p in range(4)]
    # 218 examples: greedy binning lands within a few examples of 54.5 each
    assert sum(portion_sizes) == 218 and max(portion_sizes) - min(portion_sizes) <= 3
    # 6 sources into K=3 (refused before): every portion used
    six = [rec("q", "a", source=s) for s in "abcdef" for _ in range(2)]
    assert sorted(set(STRATEGIES.get("field")(six, DisperseConfig(num_portions=3, field="source")))) == [0, 1, 2]


def test_unknown_strategy_suggests_close_name():
    with pytest.raises(ConfigError, match="Did you mean 'kmeans'"):
        STRATEGIES.get("kmean")
