"""The results library: evaluation result files read into typed records (`records`) and the
alignment-tax analyses on them (`analysis`: tax table, trade-off points and line, error sets).

It sits below `report/`, `decision/` and `frontier/`, which all read results through it.
"""
