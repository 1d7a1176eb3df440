"""The offline demos' data: the synthetic alignment-tax testbed and the real-English data for small real models."""
