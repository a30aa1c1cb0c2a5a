"""The demo: the shared space on real data, with results against baselines."""

from __future__ import annotations

import time

import numpy as np


def run_demo(figure_path, seed=0):
    import pandas as pd  # noqa: F401  (ColumnTransformer pandas output)
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from .projection import SharedProjection

    digits = load_digits(as_frame=True)
    frame, y = digits.data, digits.target.to_numpy()
    left = [c for c in frame.columns if int(c.split("_")[-1]) < 4]
    right = [c for c in frame.columns if int(c.split("_")[-1]) >= 4]
    train, test = train_test_split(np.arange(len(y)), random_state=seed, stratify=y)

    branches = ColumnTransformer(
        [("left", StandardScaler(), left), ("right", StandardScaler(), right)]
    ).set_output(transform="pandas")
    X = branches.fit_transform(frame.iloc[train])
    X_test = branches.transform(frame.iloc[test])
    start = time.perf_counter()
    projection = SharedProjection(n_components=8, reg="auto").fit(X)
    print(f"fitted the shared space in {time.perf_counter() - start:.3f} s")
    print("canonical correlations:", np.round(projection.canonical_correlations_, 3))
    print(f"held-out mean correlation: {projection.score(X_test):.3f}")

    left_only = projection.set_params(output="left").transform(X)
    right_only = projection.set_params(output="right").transform(X_test)
    clf = LogisticRegression(max_iter=2000).fit(left_only, y[train])
    print(
        "transfer: labels on left halves, predicting right halves: "
        f"{clf.score(right_only, y[test]):.3f} accuracy (chance 0.1)"
    )
    return 0
