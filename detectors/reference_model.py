"""The shipped reference for length-controlled verbosity and for relevance (evasion), stored as plain
arrays in ``detectors/data/reference_model.npz`` (``allow_pickle=False``).

* Prompt clusters: spherical k-means (k = ``N_CLUSTERS``) on hashed TF-IDF word 1-2-grams of
  prompts. For each cluster, the reference reply length distribution: mean and standard deviation
  of ``log(characters)`` of the reference replies (stronger-model answers on arena-hard, OpenAssistant
  lottery outputs of gpt-4 and claude-v1.3, hh-rlhf chosen replies, XSTest gpt-4 compliant replies).
* Relevance: cosine similarity of hashed TF-IDF unigram vectors of prompt and reply (stop words
  removed), and the reference distribution of that cosine (101 quantiles) on the same reference
  replies, so an evasion score is "how unusually low is this relevance".
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, HashingVectorizer

from detectors.features import fit_idf, tfidf, word_hasher

MODEL_PATH = resources.files("detectors") / "data" / "reference_model.npz"
"""The shipped model (package data, read with ``importlib.resources``)."""
N_CLUSTER_FEATURES = 2**14
N_REL_FEATURES = 2**16
N_CLUSTERS = 16

_CLUSTER_HASHER = word_hasher(N_CLUSTER_FEATURES, (1, 2))
_REL_HASHER = HashingVectorizer(
    n_features=N_REL_FEATURES,
    alternate_sign=False,
    norm=None,
    stop_words=sorted(ENGLISH_STOP_WORDS),
    token_pattern=r"(?u)\b[A-Za-z][A-Za-z]+\b",  # noqa: S106 (a regex, not a password)
    dtype=np.float32,
)


class ReferenceModel:
    """Cluster assignment, reference length and relevance; loaded once, calls are pure.

    Raises ``FileNotFoundError`` / ``KeyError`` for a missing or malformed model file.
    """

    def __init__(self) -> None:
        with MODEL_PATH.open("rb") as f, np.load(f, allow_pickle=False) as z:
            self.cluster_idf = z["cluster_idf"]
            self.centroids = z["centroids"]
            self.len_mu = z["len_mu"]
            self.len_sd = z["len_sd"]
            self.len_n = z["len_n"]
            self.rel_idf = z["rel_idf"]
            self.rel_quantiles = z["rel_quantiles"]

    def clusters(self, prompts: Sequence[str]) -> np.ndarray:
        """Cluster id (0..N_CLUSTERS-1) of each prompt."""
        x = tfidf(_CLUSTER_HASHER.transform(list(prompts)), self.cluster_idf)
        return np.asarray(np.argmax(x @ self.centroids.T, axis=1)).ravel()

    def relevance(self, prompts: Sequence[str], replies: Sequence[str]) -> np.ndarray:
        """Cosine in [0, 1] between prompt and reply content words (0 when either is empty)."""
        p = tfidf(_REL_HASHER.transform(list(prompts)), self.rel_idf)
        r = tfidf(_REL_HASHER.transform(list(replies)), self.rel_idf)
        return np.asarray(p.multiply(r).sum(axis=1)).ravel()

    def relevance_percentile(self, cos: np.ndarray) -> np.ndarray:
        """Where each cosine falls in the reference distribution, in [0, 1]."""
        out: np.ndarray = np.interp(cos, self.rel_quantiles, np.linspace(0.0, 1.0, len(self.rel_quantiles)))
        return out


def train(prompts: Sequence[str], replies: Sequence[str], seed: int = 0) -> dict[str, np.ndarray]:
    """Fit clusters, per-cluster log-length stats and the relevance reference on reference
    (prompt, reply) pairs. Returns the arrays written by ``np.savez_compressed``."""
    rng = np.random.default_rng(seed)
    counts = _CLUSTER_HASHER.transform(list(prompts))
    idf = fit_idf(counts)
    x = tfidf(counts, idf)
    centroids = _spherical_kmeans(x, N_CLUSTERS, rng)
    labels = np.asarray(np.argmax(x @ centroids.T, axis=1)).ravel()
    loglen = np.log(np.maximum([len(r) for r in replies], 1))
    all_mu, all_sd = float(loglen.mean()), float(loglen.std())
    mu = np.full(N_CLUSTERS, all_mu)
    sd = np.full(N_CLUSTERS, all_sd)
    n = np.zeros(N_CLUSTERS)
    for k in range(N_CLUSTERS):
        v = loglen[labels == k]
        n[k] = len(v)
        if len(v) >= 20:
            mu[k], sd[k] = float(v.mean()), max(float(v.std()), 0.25)
    rel_counts = _REL_HASHER.transform(list(prompts) + list(replies))
    rel_idf = fit_idf(rel_counts)
    p = tfidf(_REL_HASHER.transform(list(prompts)), rel_idf)
    r = tfidf(_REL_HASHER.transform(list(replies)), rel_idf)
    cos = np.asarray(p.multiply(r).sum(axis=1)).ravel()
    return {
        "cluster_idf": idf,
        "centroids": centroids.astype(np.float32),
        "len_mu": mu,
        "len_sd": sd,
        "len_n": n,
        "rel_idf": rel_idf,
        "rel_quantiles": np.quantile(cos, np.linspace(0.0, 1.0, 101)),
    }


def _spherical_kmeans(x: sparse.csr_matrix, k: int, rng: np.random.Generator, iters: int = 30) -> np.ndarray:
    """Spherical k-means on unit rows of a sparse matrix (cosine similarity); returns unit centroids."""
    n = x.shape[0]
    centroids = x[rng.choice(n, size=k, replace=False)].toarray()
    for _ in range(iters):
        labels = np.asarray(np.argmax(x @ centroids.T, axis=1)).ravel()
        member = sparse.csr_matrix((np.ones(n), (labels, np.arange(n))), shape=(k, n))
        sums = np.asarray((member @ x).todense())
        for j in range(k):
            norm = np.linalg.norm(sums[j])
            if norm > 0:
                centroids[j] = sums[j] / norm
            else:
                centroids[j] = x[rng.integers(n)].toarray().ravel()
    out: np.ndarray = centroids
    return out
