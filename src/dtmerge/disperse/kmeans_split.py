"""`kmeans`: cluster the examples by topic (the paper's clustered dispersal).

Embeds the instruction, the response or both (`disperse.embed_on`), then runs scikit-learn
KMeans on the unit-normalised vectors.
"""

from __future__ import annotations

import warnings

from dtmerge.config import DisperseConfig
from dtmerge.disperse.base import text_for
from dtmerge.disperse.embeddings import embed_texts

# Restarts with different centroid seeds; the best inertia wins (one start often lands badly).
N_INIT = 10


def kmeans_split(records: list[dict], cfg: DisperseConfig) -> list[int]:
    """Assign each record to the nearest of K k-means centroids of its embedding."""
    from sklearn.cluster import KMeans

    if cfg.num_portions == 1:
        return [0] * len(records)
    vectors = embed_texts([text_for(r, cfg.embed_on) for r in records], cfg.encoder, cfg.seed)
    with warnings.catch_warnings():
        # Fewer distinct points than K only warns; the stage reports the empty portion itself.
        warnings.simplefilter("ignore")
        kmeans = KMeans(n_clusters=cfg.num_portions, n_init=N_INIT, random_state=cfg.seed)
        labels = kmeans.fit_predict(vectors)
    return [int(label) for label in labels]
