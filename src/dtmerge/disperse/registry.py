"""The dispersal strategies, from one explicit list (imported lazily by name)."""

from dtmerge.registry import Registry

STRATEGIES = Registry(
    "dispersal strategy (disperse.strategy)",
    {
        "random": "dtmerge.disperse.random_split:random_split",
        "kmeans": "dtmerge.disperse.kmeans_split:kmeans_split",
        "field": "dtmerge.disperse.field_split:field_split",
    },
)
