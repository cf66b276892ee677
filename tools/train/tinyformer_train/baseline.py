"""The bar a small transformer has to clear: TF-IDF + logistic regression on the same split."""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm


def tfidf_baseline(texts: list[str], y: np.ndarray, tr: list[int], va: list[int], te: list[int]) -> dict:
    """Word 1-2 grams, sublinear tf; C picked on validation (ties: the smaller C)."""
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)
    xtr = vec.fit_transform([texts[i] for i in tr])
    xva = vec.transform([texts[i] for i in va])
    xte = vec.transform([texts[i] for i in te])
    grid = [0.5, 1, 2, 4, 8, 16, 32]
    scores = {}
    for c in tqdm(grid, desc="tf-idf C grid", unit="fit", leave=False):
        clf = LogisticRegression(C=c, max_iter=5000).fit(xtr, y[tr])
        scores[c] = clf.score(xva, y[va])
    best_c = max(grid, key=lambda c: (scores[c], -c))
    clf = LogisticRegression(C=best_c, max_iter=5000).fit(xtr, y[tr])
    return {"features": "TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)",
            "classifier": "LogisticRegression(max_iter=5000)",
            "C_grid_val_accuracy": {str(c): scores[c] for c in grid}, "C": best_c,
            "val_accuracy": clf.score(xva, y[va]), "test_accuracy": clf.score(xte, y[te])}
