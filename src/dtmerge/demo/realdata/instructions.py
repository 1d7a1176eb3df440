"""Natural-English instruction data, generated offline from word lists written for dtmerge.

No instruction data set can be downloaded here, so nine families of everyday instructions
(format constraints, small rewrites, lists, arithmetic, short notes) are filled from word
lists. Each example carries its family as `source`. The same families give a held-out
multiple-choice check of instruction following: the response that obeys the instruction
against ones that ignore its constraint, on instructions never seen in training.
"""

from __future__ import annotations

import random

NAMES = ["Anna", "Ben", "Clara", "David", "Emma", "Frank", "Grace", "Henry", "Iris", "Jack",
         "Laura", "Martin", "Nora", "Oliver", "Paula", "Quentin", "Rosa", "Samuel", "Tina",
         "Victor", "Wendy", "Yusuf", "Zoe", "Marek", "Leila"]
GIFTS = ["book", "scarf", "flowers", "cake", "card", "mug", "plant", "painting", "watch",
         "blanket", "tea set", "umbrella", "lamp", "candle", "puzzle", "basket of fruit"]
CATEGORIES = {
    "fruits": ["apple", "banana", "cherry", "grape", "lemon", "mango", "orange", "pear", "plum",
               "peach", "kiwi", "melon"],
    "animals": ["dog", "cat", "horse", "rabbit", "lion", "tiger", "bear", "wolf", "fox", "deer",
                "goat", "sheep"],
    "colours": ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink",
                "brown", "grey"],
    "vegetables": ["carrot", "potato", "onion", "pea", "bean", "cabbage", "leek", "spinach",
                   "lettuce", "pepper"],
    "musical instruments": ["piano", "violin", "guitar", "flute", "drum", "trumpet", "cello",
                            "harp", "clarinet"],
    "sports": ["football", "tennis", "golf", "swimming", "cycling", "rugby", "boxing", "hockey",
               "skiing", "rowing"],
    "tools": ["hammer", "saw", "drill", "wrench", "chisel", "screwdriver", "spade", "rake"],
}
OPPOSITES = {"hot": "cold", "big": "small", "fast": "slow", "happy": "sad", "light": "dark",
             "early": "late", "full": "empty", "high": "low", "old": "new", "open": "closed",
             "rich": "poor", "strong": "weak", "wet": "dry", "hard": "soft", "loud": "quiet",
             "long": "short", "thick": "thin", "clean": "dirty", "easy": "difficult"}
VERBS = {"walk": "walked", "cook": "cooked", "paint": "painted", "write": "wrote",
         "read": "read", "sing": "sang", "build": "built", "buy": "bought", "drive": "drove",
         "clean": "cleaned", "visit": "visited", "bake": "baked", "carry": "carried"}
OBJECTS = ["the letter", "a song", "the house", "a cake", "the car", "the kitchen", "a book",
           "the fence", "a picture", "the garden", "a bridge", "the report"]
SUBJECTS = ["I", "We", "They", "You"]
GROUPS = {"mammal": ["dog", "cat", "horse", "whale", "bat", "cow", "lion", "mouse"],
          "bird": ["eagle", "sparrow", "owl", "penguin", "parrot", "swan", "crow", "robin"],
          "fish": ["salmon", "trout", "shark", "cod", "tuna", "carp", "herring", "eel"]}
PREAMBLE = ("Below is an instruction that describes a task. "
            "Write a response that appropriately completes the request.")


def _capitals(rng):
    w = rng.choice([x for v in CATEGORIES.values() for x in v] + OBJECTS[:4])
    return (f"Write the word '{w}' in capital letters.", w.upper(),
            [w, f"The word {w} in capital letters."])


def _opposite(rng):
    a, b = rng.choice(list(OPPOSITES.items()))
    return (f"Answer with one word: what is the opposite of '{a}'?", f"{b.capitalize()}.",
            [f"The opposite of the word {a} is the word {b}, which means the reverse.", f"{a.capitalize()}."])


def _list3(rng):
    cat, k = rng.choice(list(CATEGORIES)), rng.choice([2, 3, 4])
    verb = rng.choice(["List", "Name", "Give me"])
    xs = rng.sample(CATEGORIES[cat], k)
    number = {2: "two", 3: "three", 4: "four"}[k]
    return (f"{verb} {number} {cat}, separated by commas.", ", ".join(xs),
            [xs[0], f"Some {cat} are {xs[0]}, and also {xs[1]}, and many more."])


def _yesno(rng):
    group = rng.choice(list(GROUPS))
    member_group = rng.choice(list(GROUPS))
    x = rng.choice(GROUPS[member_group])
    right = "Yes." if member_group == group else "No."
    wrong = "No." if right == "Yes." else "Yes."
    return (f"Answer yes or no: is a {x} a {group}?", right,
            [wrong, f"That is an interesting question about the {x} and what a {group} is."])


def _sum(rng):
    a, b = rng.randint(2, 60), rng.randint(2, 60)
    return (f"What is {a} plus {b}? Reply with the number only.", str(a + b),
            [str(a + b + rng.choice([-2, -1, 1, 2])), f"If you add {a} and {b} you get {a + b}."])


def _past(rng):
    s, (v, p), o = rng.choice(SUBJECTS), rng.choice(list(VERBS.items())), rng.choice(OBJECTS)
    return (f"Rewrite this sentence in the past tense: {s} {v} {o}.", f"{s} {p} {o}.",
            [f"{s} {v} {o}.", f"{s} will {v} {o}."])


def _thanks(rng):
    n, g = rng.choice(NAMES), rng.choice(GIFTS)
    return (f"Write a one-sentence thank-you note to {n} for the {g}.",
            f"Dear {n}, thank you so much for the lovely {g}.",
            [f"Dear {n}, I am writing to ask whether you still have the {g}.",
             f"{g.capitalize()}."])


def _sort(rng):
    xs = rng.sample([x for v in CATEGORIES.values() for x in v], 4)
    if xs == sorted(xs):
        xs.reverse()
    return (f"Sort these words alphabetically: {', '.join(xs)}.", ", ".join(sorted(xs)),
            [", ".join(xs), ", ".join(sorted(xs, reverse=True))])


def _first_letter(rng):
    w = rng.choice([x for v in CATEGORIES.values() for x in v])
    return (f"What is the first letter of the word '{w}'? Reply with the letter only.",
            w[0].upper(), [w[-1].upper(), f"The word {w} starts with a letter of the alphabet."])


FAMILIES = {"capitals": _capitals, "opposite": _opposite, "list": _list3, "yes_no": _yesno,
            "arithmetic": _sum, "past_tense": _past, "thank_you": _thanks, "sort": _sort,
            "first_letter": _first_letter}


# Held-out checks per family are capped at this share of the family's distinct instructions,
# so training data still covers every family (`opposite` has only 19 instructions).
HELDOUT_SHARE = 0.5
# 400 checks: a standard error of at most 0.025 on all items (p = 0.5), and at most 0.029 on
# the test part when a quarter of the items is kept for validation (eval.validation_fraction).
NUM_CHECKS = 400


def family_capacity(family: str, draws: int = 4000) -> int:
    """How many distinct instructions `family` produces (counted over `draws` seeded draws)."""
    rng = random.Random(0)
    return len({FAMILIES[family](rng)[0] for _ in range(draws)})


def instruction_check_items(n: int = NUM_CHECKS, seed: int = 1) -> list[dict]:
    """Held-out multiple-choice checks {prompt, choices, answer, family}: the prompt is in the
    Alpaca template; choice 0 before shuffling is the response that follows the instruction.

    Families take turns; a family stops once it holds HELDOUT_SHARE of its distinct
    instructions, so small families (`opposite`) keep instructions for training.
    """
    rng = random.Random(seed)
    families = sorted(FAMILIES)
    caps = {f: int(HELDOUT_SHARE * family_capacity(f)) for f in families}
    if sum(caps.values()) < n:
        raise ValueError(f"only {sum(caps.values())} held-out instruction checks are possible "
                         f"(half of each family's distinct instructions); asked for {n}")
    items, seen, count = [], set(), dict.fromkeys(families, 0)
    while len(items) < n:
        open_families = [f for f in families if count[f] < caps[f]]
        family = open_families[len(items) % len(open_families)]
        for _ in range(1000):  # bounded: the cap is half the family's distinct instructions
            instruction, right, wrong = FAMILIES[family](rng)
            if instruction not in seen:
                break
        else:
            caps[family] = count[family]  # no new instruction found: close the family
            continue
        seen.add(instruction)
        count[family] += 1
        # A wrong response can coincide with the right one (past tense of "read"): drop it.
        choices = [right, *dict.fromkeys(w for w in wrong if w != right)]
        rng.shuffle(choices)
        prompt = f"{PREAMBLE}\n\n### Instruction:\n{instruction}\n\n### Response:\n"
        items.append({"prompt": prompt, "instruction": instruction, "choices": choices,
                      "answer": choices.index(right), "family": family})
    return items


def instruction_examples(n: int, seed: int = 0, exclude: set[str] = frozenset()) -> list[dict]:
    """`n` Alpaca-format training examples {instruction, input, output, source}; instructions
    in `exclude` (the held-out checks) never appear. Duplicates are allowed, as in real data."""
    rng = random.Random(seed)
    families = sorted(FAMILIES)
    out = []
    while len(out) < n:
        family = rng.choice(families)
        instruction, right, _ = FAMILIES[family](rng)
        if instruction in exclude:
            continue
        out.append({"instruction": instruction, "input": "", "output": right, "source": family})
    return out
