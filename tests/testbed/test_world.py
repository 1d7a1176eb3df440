"""The generated world and its benchmarks: facts consistent, answers derivable, seeded."""

from __future__ import annotations

from dtmerge.demo.testbed.benchmarks import knowledge_docs, reasoning_docs
from dtmerge.demo.testbed.instructions import FACT_FAMILIES, heldout_instruction_docs
from dtmerge.demo.testbed.world import ATTRIBUTES, make_world, pretraining_documents


def _world(seed=0):
    return make_world(seed, num_people=40, num_cities=8, num_employers=6)


def test_world_facts_are_consistent():
    world = _world()
    names = [p.name for p in world.people]
    assert len(names) == len(set(names)) == 40
    for person in world.people:
        for attribute in ATTRIBUTES:
            assert person.get(attribute) in world.values[attribute]
    assert set(world.city_country) == set(world.values["city"])
    # Names and values never collide, so a question has one reading.
    first_words = {n.split()[0] for n in names}
    assert not first_words & set(world.values["city"]) & set(world.values["employer"])


def test_same_seed_same_world_other_seed_other_world():
    assert _world(1).to_dict() == _world(1).to_dict()
    assert _world(1).to_dict() != _world(2).to_dict()


def test_pretraining_text_states_every_fact():
    world = _world()
    text = "\n".join(pretraining_documents(world, 0, passes=1, premises=5))
    for person in world.people:
        for attribute in ATTRIBUTES:
            assert f"{person.name} " in text and person.get(attribute) in text
        assert f"{person.name} was born in {person.city}." in text


def test_knowledge_answers_come_from_the_world():
    world = _world()
    docs = knowledge_docs(world, seed=0)
    assert len(docs) == len(world.people) * len(ATTRIBUTES)
    for doc in docs:
        truth = world.person(doc["person"]).get(doc["attribute"])
        assert doc["choices"][doc["gold"]] == truth
        assert doc["choices"].count(truth) == 1 and len(set(doc["choices"])) == 4
        assert doc["person"] in doc["question"]


def test_reasoning_answer_follows_from_premise_and_world():
    world = _world()
    docs = reasoning_docs(world, seed=0, n=30)
    assert len(docs) == 30
    for doc in docs:
        assert doc["question_text"].startswith(f"Suppose {doc['person']} was born in {doc['city']}.")
        assert doc["choices"][doc["gold"]] == world.city_country[doc["city"]]
        assert len(set(doc["choices"])) == 4 and set(doc["choices"]) <= set(world.values["country"])
    # Most premises contradict the person's real city: memory alone cannot answer them.
    real = {p.name.split()[0]: p.city for p in world.people}
    assert sum(real[d["person"]] != d["city"] for d in docs) >= 20


def test_reasoning_probe_premises_never_appear_in_pretraining():
    world = _world()
    text = "\n".join(pretraining_documents(world, 0, passes=0, premises=2000))
    asked = reasoning_docs(world, seed=0, n=50)
    assert "Suppose" in text
    for doc in asked:
        assert doc["question_text"] not in text


def test_heldout_instruction_answers_are_derivable():
    world = _world()
    docs = heldout_instruction_docs(world, per_family=5, seed=0)
    for doc in docs:
        if doc["family"] in FACT_FAMILIES:
            assert doc["value"] == [world.person(doc["person"]).get(doc["attribute"])]
        else:
            listed = doc["instruction"].split(": ", 1)[1].split("?")[0].split()
            assert doc["value"] == (listed if doc["family"] != "first_word" else listed[:1])
        assert doc["prompt"].endswith("### Response:\n") and doc["instruction"] in doc["prompt"]


def test_reasoning_docs_are_seeded():
    world = _world()
    assert reasoning_docs(world, 3, 10) == reasoning_docs(world, 3, 10)
    assert reasoning_docs(world, 3, 10) != reasoning_docs(world, 4, 10)


def test_general_text_is_real_prose_and_seeded():
    from dtmerge.demo.realdata.text import docstring_sentences

    world = _world()
    docs = pretraining_documents(world, 0, passes=0, premises=0, general_passes=1)
    sentences = set(docstring_sentences())
    assert docs and all(world.people[0].name not in d for d in docs)
    assert sum(len(d.split(". ")) for d in docs) >= len(sentences) * 0.9
    assert any(s in docs[0] for s in sentences)
    assert docs == pretraining_documents(world, 0, passes=0, premises=0, general_passes=1)


def test_reading_the_standard_librarys_docstrings_warns_nothing():
    """typing.io / typing.re warn on any attribute read (Python < 3.12): every cold build of the
    testbed ended `make demo` with two DeprecationWarnings about them."""
    import warnings

    from dtmerge.demo.realdata.text import docstring_sentences

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert docstring_sentences()
