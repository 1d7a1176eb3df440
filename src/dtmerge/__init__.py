"""dtmerge: Disperse-Then-Merge instruction tuning with alignment-tax evidence."""

__version__ = "0.1.0"
