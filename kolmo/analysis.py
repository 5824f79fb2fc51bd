"""Using the distances: hierarchical clustering and a k-nearest-neighbour classifier.

``cluster(m)`` runs scipy's agglomerative clustering on a distance matrix (NCD, or the
conditional measure made symmetric by averaging the two directions).

``NCDClassifier`` is a scikit-learn compatible k-NN classifier over compression distances, as in
"Less is more: parameter-free text classification with gzip" (Jiang et al. 2023), with an honest
tie-break: the predicted class is the one with most votes among the k nearest training items;
among classes with equal votes, the one whose voters are closer in total wins, then the one of
the nearest voter. (That paper's code counted a tie as correct when either tied class was right,
which inflates accuracy.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

import numpy as np

from .inputs import as_collection
from .matrices import DistanceMatrix, CodeLengths
from .options import check_int
from .measures import ncd_array
from .registry import resolve


@dataclass(frozen=True)
class Clustering:
    """A hierarchical clustering: scipy's linkage matrix plus the labels it refers to."""

    linkage: np.ndarray
    labels: tuple
    method: str

    def clusters(self, k: int) -> Dict[str, int]:
        """Cut the tree into ``k`` clusters: label -> cluster number (1..k)."""
        from scipy.cluster.hierarchy import fcluster
        return dict(zip(self.labels, (int(c) for c in fcluster(self.linkage, k, criterion="maxclust"))))

    def dendrogram(self, ax=None, path: Union[str, Path, None] = None, **kwargs: Any):
        """Draw the dendrogram with matplotlib (returns the Axes; writes ``path`` if given)."""
        from .plot import dendrogram
        return dendrogram(self, ax=ax, path=path, **kwargs)


def cluster(m: DistanceMatrix, method: str = "average") -> Clustering:
    """Agglomerative clustering of a distance matrix (``ncd`` or ``conditional``)."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform
    if not isinstance(m, DistanceMatrix):
        raise TypeError(f"cluster expects a kolmo DistanceMatrix (from kolmo.matrix), got {type(m).__name__}")
    if m.measure not in ("ncd", "conditional"):
        raise ValueError(f"cluster needs a distance: measure 'ncd' or 'conditional', not {m.measure!r} "
                         "(a gap is a similarity)")
    if len(m) < 2:
        raise ValueError("cluster needs at least 2 items")
    d = np.asarray(m, dtype=np.float64)
    d = (d + d.T) / 2.0
    np.fill_diagonal(d, 0.0)
    d = np.maximum(d, 0.0)
    return Clustering(linkage=linkage(squareform(d, checks=False), method=method), labels=m.labels, method=method)


class NCDClassifier:
    """k-NN over normalized compression distance; ``fit(X, y)``, ``predict(X)``, ``score(X, y)``.

    X is a list of inputs (bytes, str, Path). Distances are computed with kolmo's matrix engine,
    so they share its cache, workers and executor.
    """

    def __init__(self, k: int = 1, compressor: Any = "zstd", cache: Any = True, workers: int = 1,
                 executor: Any = None, progress: bool = False):
        self.k = k
        self.compressor = compressor
        self.cache = cache
        self.workers = workers
        self.executor = executor
        self.progress = progress

    # scikit-learn's estimator protocol
    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in ("k", "compressor", "cache", "workers", "executor", "progress")}

    def __sklearn_tags__(self):
        # scikit-learn >= 1.6 reads an estimator's capabilities here; imported only when asked
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags
        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags(), input_tags=InputTags(one_d_array=True, two_d_array=False,
                                                                           string=True),
                    no_validation=True)

    def set_params(self, **params: Any) -> "NCDClassifier":
        for k, v in params.items():
            if k not in self.get_params():
                raise ValueError(f"unknown parameter {k!r} for NCDClassifier")
            setattr(self, k, v)
        return self

    def fit(self, X: Sequence[Any], y: Sequence[Any]) -> "NCDClassifier":
        if len(X) != len(y):
            raise ValueError(f"X and y differ in length: {len(X)} items, {len(y)} labels")
        check_int("k", self.k)
        if len(X) == 0:
            raise ValueError("fit needs at least one training item")
        self.train_ = as_collection(list(X), name="X")[1]
        self.y_ = np.asarray(y)
        self.classes_ = np.unique(self.y_)
        return self

    def distances(self, X: Sequence[Any]) -> np.ndarray:
        """NCD from each item of X (rows) to each training item (columns)."""
        if not hasattr(self, "train_"):
            raise RuntimeError("call fit(X, y) before predict or distances")
        test = as_collection(list(X), name="X")[1]
        data = self.train_ + test
        nt, n = len(self.train_), len(data)
        eng = CodeLengths(resolve(self.compressor), data, cache=self.cache, workers=self.workers,
                     executor=self.executor, progress=self.progress)
        joint = [(t, r) for t in range(nt, n) for r in range(nt)]
        s, jn, _ = eng.run(range(n), joint + [(r, t) for t, r in joint], [])
        return ncd_array(s[nt:, None], s[None, :nt], jn[nt:, :nt], jn[:nt, nt:].T)

    def predict(self, X: Sequence[Any]) -> np.ndarray:
        d = self.distances(X)
        k = min(self.k, d.shape[1])
        out: List[Any] = []
        for row in d:
            near = np.argsort(row, kind="stable")[:k]
            votes: Dict[Any, List[float]] = {}
            for j in near:
                votes.setdefault(self.y_[j], []).append(float(row[j]))
            best = max(votes.items(), key=lambda kv: (len(kv[1]), -sum(kv[1]), -min(kv[1])))
            out.append(best[0])
        return np.asarray(out)

    def score(self, X: Sequence[Any], y: Sequence[Any]) -> float:
        """Accuracy: the fraction of X whose predicted label equals y (ties resolved, never double-counted)."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    def __repr__(self) -> str:
        return f"NCDClassifier(k={self.k}, compressor={self.compressor!r})"

