"""Real-world facts a pretrained model knows: the knowledge probe for the Gemma run.

Each family is a small table written for dtmerge; an item asks one fact and offers the
right answer among three wrong ones drawn from the same family. A base model scores well
above chance; the drop after instruction tuning is the alignment tax on real knowledge.
"""

from __future__ import annotations

import random

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid",
    "Portugal": "Lisbon", "Japan": "Tokyo", "China": "Beijing", "Russia": "Moscow",
    "Egypt": "Cairo", "Greece": "Athens", "Canada": "Ottawa", "Australia": "Canberra",
    "Kenya": "Nairobi", "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki",
    "Poland": "Warsaw", "Austria": "Vienna", "Ireland": "Dublin", "Argentina": "Buenos Aires",
    "Peru": "Lima", "Thailand": "Bangkok", "South Korea": "Seoul", "Turkey": "Ankara",
    "Hungary": "Budapest", "Denmark": "Copenhagen", "India": "New Delhi", "Cuba": "Havana",
}
SYMBOLS = {
    "gold": "Au", "silver": "Ag", "iron": "Fe", "sodium": "Na", "potassium": "K",
    "oxygen": "O", "hydrogen": "H", "carbon": "C", "helium": "He", "copper": "Cu",
    "lead": "Pb", "mercury": "Hg", "nitrogen": "N", "calcium": "Ca", "zinc": "Zn",
}
AUTHORS = {
    "Romeo and Juliet": "William Shakespeare", "Pride and Prejudice": "Jane Austen",
    "War and Peace": "Leo Tolstoy", "Don Quixote": "Miguel de Cervantes",
    "Oliver Twist": "Charles Dickens", "The Odyssey": "Homer", "Hamlet": "William Shakespeare",
    "Nineteen Eighty-Four": "George Orwell", "Moby-Dick": "Herman Melville",
    "The Origin of Species": "Charles Darwin", "Faust": "Johann Wolfgang von Goethe",
    "Crime and Punishment": "Fyodor Dostoevsky", "Les Misérables": "Victor Hugo",
}
LANGUAGES = {
    "Brazil": "Portuguese", "Mexico": "Spanish", "Germany": "German", "Japan": "Japanese",
    "France": "French", "Italy": "Italian", "Russia": "Russian", "Greece": "Greek",
    "Sweden": "Swedish", "Poland": "Polish", "Turkey": "Turkish", "China": "Chinese",
    "Netherlands": "Dutch", "Hungary": "Hungarian",
}
SCIENCE = [
    ("Which planet is closest to the Sun?", "Mercury", ["Mars", "Jupiter", "Neptune"]),
    ("Which planet is the largest in the Solar System?", "Jupiter", ["Mercury", "Mars", "Venus"]),
    ("Which planet is known as the Red Planet?", "Mars", ["Venus", "Saturn", "Uranus"]),
    ("What gas do plants absorb from the air for photosynthesis?", "carbon dioxide",
     ["helium", "neon", "argon"]),
    ("At what temperature in degrees Celsius does water boil at sea level?", "100",
     ["50", "0", "212"]),
    ("How many legs does a spider have?", "eight", ["six", "four", "ten"]),
    ("How many days are there in a leap year?", "366", ["365", "364", "360"]),
    ("What is the largest ocean on Earth?", "the Pacific Ocean",
     ["the Atlantic Ocean", "the Indian Ocean", "the Arctic Ocean"]),
    ("What is the tallest mountain on Earth?", "Mount Everest",
     ["Mont Blanc", "Mount Kilimanjaro", "Mount Fuji"]),
    ("What is the longest river in Africa?", "the Nile", ["the Thames", "the Danube", "the Seine"]),
    ("Which organ pumps blood through the human body?", "the heart",
     ["the liver", "the lungs", "the kidney"]),
    ("What is the chemical formula of water?", "H2O", ["CO2", "NaCl", "O3"]),
    ("Who developed the theory of general relativity?", "Albert Einstein",
     ["Isaac Newton", "Charles Darwin", "Nikola Tesla"]),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci",
     ["Vincent van Gogh", "Pablo Picasso", "Claude Monet"]),
    ("How many continents are there on Earth?", "seven", ["five", "nine", "three"]),
    ("What is the freezing point of water in degrees Celsius?", "0", ["10", "32", "-20"]),
]

_FAMILIES = [
    (CAPITALS, "What is the capital of {k}?"),
    (SYMBOLS, "What is the chemical symbol of {k}?"),
    (AUTHORS, "Who wrote {k}?"),
    (LANGUAGES, "What is the main language spoken in {k}?"),
]


def world_fact_items(seed: int = 0) -> list[dict]:
    """Multiple-choice items {question, choices, answer (index), family}, shuffled choices."""
    rng = random.Random(seed)
    items = []
    for table, template in _FAMILIES:
        values = sorted(set(table.values()))
        for key, right in table.items():
            wrong = rng.sample([v for v in values if v != right], 3)
            items.append(_item(rng, template.format(k=key), right, wrong, template.split()[2]))
    for question, right, wrong in SCIENCE:
        items.append(_item(rng, question, right, wrong, "science"))
    return items


def _item(rng: random.Random, question: str, right: str, wrong: list[str], family: str) -> dict:
    choices = [right, *wrong]
    rng.shuffle(choices)
    return {"question": question, "choices": choices, "answer": choices.index(right),
            "family": family}
