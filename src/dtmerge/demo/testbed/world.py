"""A seeded world of facts, and the pretraining text that teaches it.

People have a birth city, an employer and a field; cities lie in countries. Every value is
drawn uniformly so the base model has no reason to prefer any of them: a preference for the
"popular" values can then only come from the instruction data (see instructions.py).

Written by hand: no library generates synthetic knowledge worlds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# Syllables that the BPE tokenizer turns into a few tokens each, so names are cheap.
_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st", "tr"]
_VOWELS = ["a", "e", "i", "o", "u"]
_CODAS = ["", "", "n", "r", "l", "s", "x"]

COLORS = ["red", "blue", "green", "black", "white", "brown", "pink", "gray"]
OBJECTS = ["lamp", "cup", "key", "coin", "book", "hat", "ring", "box", "pen", "bell",
           "shoe", "bag", "map", "drum", "kite", "rope"]
FIELDS = ["chemist", "painter", "lawyer", "farmer", "pilot", "teacher", "doctor", "baker",
          "sailor", "writer", "nurse", "judge"]

# Attribute name -> (question used by benchmarks and instructions, JSON key).
ATTRIBUTES = {
    "city": ("Where was {name} born?", "city"),
    "employer": ("Who does {name} work for?", "employer"),
    "field": ("What is the job of {name}?", "job"),
}

# Several paraphrases per fact, so the model learns the fact rather than one sentence.
_PARAPHRASES = {
    "city": ["{name} was born in {value}.", "{name} is a native of {value}.",
             "Q: Where was {name} born? A: {value}."],
    "employer": ["{name} works for {value}.", "{name} is employed by {value}.",
                 "Q: Who does {name} work for? A: {value}."],
    "field": ["{name} works as a {value}.", "{name} is a {value} by trade.",
              "Q: What is the job of {name}? A: {value}."],
}
_COUNTRY_PARAPHRASES = ["{city} is a city in {country}.", "{city} lies in {country}."]


@dataclass(frozen=True)
class Person:
    name: str
    city: str
    employer: str
    field: str

    def get(self, attribute: str) -> str:
        return getattr(self, attribute)


@dataclass
class World:
    """All facts of one seed. `values[attr]` lists the possible values of each attribute."""

    seed: int
    people: list[Person]
    city_country: dict[str, str]
    values: dict[str, list[str]] = field(default_factory=dict)

    def person(self, name: str) -> Person:
        return next(p for p in self.people if p.name == name)

    def popular(self, attribute: str, n: int = 3) -> list[str]:
        """The values the biased instruction source over-uses (the first n, by construction)."""
        return self.values[attribute][:n]

    def to_dict(self) -> dict:
        return {"seed": self.seed, "people": [vars(p) for p in self.people],
                "city_country": self.city_country, "values": self.values}


def _word(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
             for _ in range(syllables)]
    return "".join(parts).capitalize()


def _unique_words(rng: random.Random, n: int, syllables: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        w = _word(rng, syllables)
        if w not in taken and len(w) >= 3:
            taken.add(w)
            out.append(w)
    return out


def make_world(seed: int, num_people: int, num_cities: int, num_employers: int,
               num_countries: int = 6) -> World:
    """Draw a world: unique names, uniform attribute values.

    Args:
        seed: the only source of randomness.
        num_people: people to describe (the knowledge benchmark asks about each).
        num_cities, num_employers, num_countries: sizes of the value sets.

    Returns:
        A `World`; the same arguments always give the same world.
    """
    rng = random.Random(seed)
    taken: set[str] = set()
    countries = _unique_words(rng, num_countries, 2, taken)
    cities = _unique_words(rng, num_cities, 2, taken)
    employers = _unique_words(rng, num_employers, 2, taken)
    # Unique first names: a fact is then a key -> value pair the model can store directly
    # (first/last names shared across people would need a conjunction, much slower to learn).
    firsts = _unique_words(rng, num_people, 2, taken)
    lasts = _unique_words(rng, max(4, num_people // 8), 1, taken)
    names = [f"{first} {rng.choice(lasts)}" for first in firsts]
    fields = FIELDS[:]
    people = [Person(n, rng.choice(cities), rng.choice(employers), rng.choice(fields))
              for n in names]
    city_country = {c: rng.choice(countries) for c in cities}
    return World(seed, people, city_country,
                 {"city": cities, "employer": employers, "field": fields, "country": countries})


def fact_sentences(world: World, rng: random.Random) -> list[str]:
    """Every fact in every paraphrase, plus city-country facts, shuffled."""
    out = []
    for p in world.people:
        for attr, templates in _PARAPHRASES.items():
            out += [t.format(name=p.name, value=p.get(attr)) for t in templates]
    for city, country in world.city_country.items():
        out += [t.format(city=city, country=country) for t in _COUNTRY_PARAPHRASES]
    rng.shuffle(out)
    return out


PREMISE = "Suppose {name} was born in {city}. Then {name} was born in"


def premise_splits(world: World, seed: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Every (first name, city) premise, split into those pretraining shows and those only the
    reasoning probe asks (a fixed third, seeded), so the probe is never answered from memory.

    Most premises contradict what the world says about the person (the premise city is drawn
    from all cities), so the answer cannot come from the person's own remembered city.
    """
    rng = random.Random(seed * 4099 + 7)
    pairs = [(p.name.split()[0], city) for p in world.people for city in world.values["city"]]
    rng.shuffle(pairs)
    cut = len(pairs) // 3
    return pairs[cut:], pairs[:cut]


def premise_text(world: World, first: str, city: str, with_answer: bool) -> str:
    """The reasoning probe's form: a premise plus a known fact (the city's country) give the
    conclusion. Returns the prompt, and with `with_answer` the conclusion's country too."""
    text = PREMISE.format(name=first, city=city)
    return f"{text} {world.city_country[city]}." if with_answer else text


def general_documents(rng: random.Random, passes: int) -> list[str]:
    """General English for the base: `passes` shuffled passes over the prose sentences of the
    Python standard library's docstrings (real human-written text on every machine that runs
    dtmerge; ~500 sentences), in paragraphs of five."""
    from dtmerge.demo.realdata.text import docstring_sentences

    sentences = docstring_sentences()
    docs = []
    for _ in range(passes):
        order = sentences[:]
        rng.shuffle(order)
        docs += [" ".join(order[i:i + 5]) for i in range(0, len(order), 5)]
    return docs


def pretraining_documents(world: World, seed: int, passes: int, premises: int,
                          general_passes: int = 0) -> list[str]:
    """Documents for pretraining: `passes` shuffled passes over all fact sentences (grouped
    into short paragraphs), `premises` premise-conclusion examples drawn from the pretraining
    split of `premise_splits` (never a pair the reasoning probe asks) and `general_passes`
    passes over general English text."""
    rng = random.Random(seed * 7919 + 1)
    docs: list[str] = general_documents(rng, general_passes)
    for _ in range(passes):
        sentences = fact_sentences(world, rng)
        for i in range(0, len(sentences), 6):
            docs.append(" ".join(sentences[i:i + 6]))
    seen, _ = premise_splits(world, seed)
    docs += [premise_text(world, *rng.choice(seen), with_answer=True) for _ in range(premises)]
    rng.shuffle(docs)
    return docs
