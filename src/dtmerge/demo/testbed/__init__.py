"""The embedded offline alignment-tax testbed: a seeded world, a tiny base model that knows
it, biased instruction data, and lm-eval benchmarks (see README.md in this folder)."""

from dtmerge.demo.testbed.build import SIZES, Testbed, build_testbed

__all__ = ["SIZES", "Testbed", "build_testbed"]
