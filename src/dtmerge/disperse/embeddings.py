"""Text embeddings for clustering: TF-IDF (offline, no model) or a sentence-transformers encoder."""

from __future__ import annotations

import numpy as np

from dtmerge.errors import ConfigError, DataError, ModelError

# TF-IDF vectors are reduced to this many dimensions so k-means stays fast on large sets.
TFIDF_DIMS = 128


def embed_texts(texts: list[str], encoder: str = "tfidf", seed: int = 0) -> np.ndarray:
    """Embed texts as L2-normalised rows (so Euclidean k-means acts like cosine k-means).

    Args:
        texts: One text per example.
        encoder: "tfidf", or a sentence-transformers model name or local path.
        seed: Seed of the TF-IDF dimensionality reduction.

    Returns:
        Array of shape (len(texts), dims), each row of unit norm (or zero for empty texts).

    Raises:
        DataError: The texts have no usable words (TF-IDF).
        ConfigError: sentence-transformers is not installed.
        ModelError: The encoder cannot be loaded.
    """
    from sklearn.preprocessing import normalize

    if encoder == "tfidf":
        vectors = _tfidf(texts, seed)
    else:
        vectors = _sentence_transformer(texts, encoder)
    return normalize(np.asarray(vectors, dtype=np.float32))


def _tfidf(texts: list[str], seed: int) -> np.ndarray:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english", max_features=50000)
        matrix = vectorizer.fit_transform(texts)
    except ValueError as err:  # "empty vocabulary": every text empty or stop words only
        raise DataError(f"cannot embed the texts with TF-IDF: {err}") from None
    dims = min(TFIDF_DIMS, matrix.shape[1] - 1, matrix.shape[0] - 1)
    if dims < 2:
        return matrix.toarray()
    return TruncatedSVD(n_components=dims, random_state=seed).fit_transform(matrix)


def _sentence_transformer(texts: list[str], encoder: str) -> np.ndarray:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ConfigError(
            f"disperse.encoder '{encoder}' needs the sentence-transformers package: "
            "pip install 'dtmerge[embed]' (or use disperse.encoder=tfidf, which works offline)"
        ) from None
    try:
        model = SentenceTransformer(encoder)
    except Exception as err:  # not found, offline, incompatible files...
        raise ModelError(
            f"cannot load sentence-transformers encoder '{encoder}': {err}. Give a local "
            "model directory, or use disperse.encoder=tfidf offline"
        ) from None
    return model.encode(texts, batch_size=64, show_progress_bar=len(texts) > 5000,
                        normalize_embeddings=True)
