"""`dtm recipes`: the registered recipes, what each does, and its parameters with defaults."""

import sys


def add_arguments(p):
    p.add_argument("name", nargs="?", help="one recipe (default: all)")


def describe(name: str) -> str:
    from dtmerge.recipes import RECIPES

    cls = RECIPES.get(name)
    doc = sys.modules[cls.__module__].__doc__ or ""
    summary = " ".join(doc.split("\n\n")[0].split())
    lines = [f"{name}: {summary}"]
    for key, field in cls.Params.model_fields.items():
        default = "required" if field.is_required() else f"default {field.default!r}"
        lines.append(f"    {key} ({default})" + (f": {field.description}" if field.description else ""))
    return "\n".join(lines)


def run(args) -> int:
    from dtmerge.recipes import RECIPES

    for name in [args.name] if args.name else RECIPES.names():
        print(describe(name))
    return 0
