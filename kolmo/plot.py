"""Plots with matplotlib: a heatmap of a distance matrix and a dendrogram of a clustering.

Both take an optional ``ax`` and an optional ``path`` (PNG, PDF, SVG...) and return the Axes.
Nothing in kolmo imports this module except the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union


def _axes(ax, size):
    if ax is not None:
        return ax
    import matplotlib
    if matplotlib.get_backend().lower() not in ("agg",) and not _interactive():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    _, ax = plt.subplots(figsize=size)
    return ax


def _interactive() -> bool:
    try:
        from IPython import get_ipython
        return get_ipython() is not None
    except ImportError:
        return False


def _save(ax, path: Optional[Union[str, Path]]) -> None:
    if path is not None:
        ax.figure.tight_layout()
        ax.figure.savefig(str(path), dpi=120)


def heatmap(m, ax=None, path: Union[str, Path, None] = None, cmap: str = "viridis", annotate: Optional[bool] = None):
    """A matrix as a heatmap, labels on both axes, with a colour bar naming measure and units."""
    import numpy as np
    values = np.asarray(m, dtype=float)
    n = values.shape[0]
    ax = _axes(ax, (max(4.0, 0.45 * n + 2), max(3.5, 0.45 * n + 1.5)))
    im = ax.imshow(values, cmap=cmap)
    ax.set_xticks(range(n), labels=list(m.labels), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels=list(m.labels), fontsize=8)
    unit = "" if m.measure == "ncd" else " (bits)"
    ax.figure.colorbar(im, ax=ax, label=f"{m.measure}{unit}")
    ax.set_title(f"{m.measure}, {m.compressor}")
    if annotate or (annotate is None and n <= 10):
        mid = (np.nanmin(values) + np.nanmax(values)) / 2
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{values[i, j]:.2f}" if m.measure == "ncd" else f"{values[i, j]:.0f}",
                        ha="center", va="center", fontsize=7, color="white" if values[i, j] < mid else "black")
    _save(ax, path)
    return ax


def dendrogram(clustering, ax=None, path: Union[str, Path, None] = None, **kwargs: Any):
    """The dendrogram of a :class:`kolmo.analysis.Clustering`."""
    from scipy.cluster.hierarchy import dendrogram as _dendrogram
    n = len(clustering.labels)
    ax = _axes(ax, (6.0, max(3.0, 0.35 * n + 1)))
    _dendrogram(clustering.linkage, labels=list(clustering.labels), orientation="right", ax=ax, **kwargs)
    ax.set_xlabel(f"distance ({clustering.method} linkage)")
    _save(ax, path)
    return ax
