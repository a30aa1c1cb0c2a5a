"""The demo: a shared text-image space on the bundled emoji, against baselines.

``python -m skcrossmodal demo`` runs it. Every step is an ordinary
scikit-learn object: a ColumnTransformer routes the emoji names to TF-IDF +
TruncatedSVD and the pixels to PCA, a SharedProjection learns the shared
space without labels, retrieval ranks images for texts (and back), and a
CrossModalTransferClassifier learns categories from text and predicts them
for images it never saw with a label.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np

N_COMPONENTS = 30
TEXT_COMPONENTS = 300
IMAGE_COMPONENTS = 100


@contextmanager
def _step(number, total, what):
    """Print a step, and how long it took when that was over a second."""
    print(f"[{number}/{total}] {what} ...", end="", flush=True)
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    print(f" done ({elapsed:.1f} s)" if elapsed >= 1 else " done", flush=True)


def _features(seed):
    from sklearn.decomposition import PCA, TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .compose import make_modality_transformer

    def pixels(frame):
        return [column for column in frame.columns if column.startswith("pixel_")]

    return make_modality_transformer(
        (
            "text",
            make_pipeline(
                TfidfVectorizer(sublinear_tf=True),
                TruncatedSVD(TEXT_COMPONENTS, random_state=seed),
            ),
            "text",
        ),
        (
            "image",
            make_pipeline(StandardScaler(), PCA(IMAGE_COMPONENTS, random_state=seed)),
            pixels,
        ),
    )


def _only(X, modality, other):
    """A copy of X whose ``other`` block is NaN: rows carrying ``modality`` only."""
    X = X.copy()
    X[[c for c in X.columns if c.startswith(f"{other}__")]] = np.nan
    return X


def run_demo(figure_path, seed=0):
    from threadpoolctl import threadpool_limits

    # The demo's matrices are small (about 2 000 rows): one BLAS thread is
    # as fast as two, and much faster when other work shares the cores.
    with threadpool_limits(limits=1):
        return _run(figure_path, seed)


def _run(figure_path, seed):
    try:
        import pandas as pd
    except ImportError:
        raise SystemExit(
            "The demo routes the columns of a pandas DataFrame (a text column "
            "and pixel columns) through a ColumnTransformer, and pandas is not "
            "installed. `pip install 'skcrossmodal[demo]'` adds it (and "
            "matplotlib, for the figure)."
        ) from None
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .datasets import load_emoji
    from .projection import SharedProjection
    from .retrieval import evaluate_embeddings, evaluate_retrieval
    from .transfer import CrossModalTransferClassifier

    total = 5
    with _step(1, total, "loading the bundled emoji (names + 32x32 images)"):
        emoji = load_emoji(as_frame=True)
        frame, y = emoji.data, np.asarray(emoji.target)
        train, test = train_test_split(
            np.arange(len(y)), test_size=0.25, random_state=seed, stratify=y
        )
    print(
        f"      {len(y)} emoji, {len(emoji.target_names)} categories; "
        f"{len(train)} to train, {len(test)} held out"
    )

    with _step(2, total, "features: TF-IDF + SVD for text, PCA for pixels"):
        features = _features(seed)
        X_train = features.fit_transform(frame.iloc[train])
        X_test = features.transform(frame.iloc[test])

    with _step(3, total, "fitting the shared space (no labels)"):
        projection = SharedProjection(N_COMPONENTS, reg="auto").fit(X_train)
    print(
        "      top canonical correlations: "
        + ", ".join(f"{c:.2f}" for c in projection.canonical_correlations_[:5])
        + f"; held-out mean {projection.score(X_test):.2f}"
    )

    rows = []
    with _step(4, total, "cross-modal retrieval on the held-out emoji"):
        rng = np.random.default_rng(seed)
        unaligned = _unaligned_baseline(X_train, X_test, seed)
        # Paired relevance (the same emoji) is read by recall@k, label
        # relevance (the same category) by mAP.
        tasks = (
            ("same emoji", None, ("recall@1", "recall@10")),
            ("same category", y[test], ("mean_average_precision",)),
        )
        for query, gallery in (("text", "image"), ("image", "text")):
            for relevance, labels, metrics in tasks:
                ours = evaluate_retrieval(
                    projection,
                    X_test,
                    query_modality=query,
                    gallery_modality=gallery,
                    y_query=labels,
                    k=(1, 10),
                )
                raw = evaluate_embeddings(
                    unaligned[query], unaligned[gallery], labels, labels, k=(1, 10)
                )
                noise = rng.normal(size=(len(test), N_COMPONENTS))
                chance = evaluate_embeddings(
                    noise, rng.normal(size=noise.shape), labels, labels, k=(1, 10)
                )
                for metric in metrics:
                    name = "mAP" if metric == "mean_average_precision" else metric
                    rows.append(
                        {
                            "task": f"{query}->{gallery} {name} ({relevance})",
                            "skcrossmodal": ours[metric],
                            "baseline": raw[metric],
                            "chance": chance[metric],
                        }
                    )

    with _step(5, total, "transfer: category labels on text only, predict images"):
        # Pre-training pairs carry no labels (-1); the labelled rows carry
        # their text only. Test rows carry their image only.
        X_fit = pd.concat([X_train, _only(X_train, "text", "image")], ignore_index=True)
        y_fit = np.concatenate([np.full(len(train), -1), y[train]])
        transfer = CrossModalTransferClassifier(
            SharedProjection(N_COMPONENTS, reg="auto"),
            LogisticRegression(max_iter=3000),
        ).fit(X_fit, y_fit)
        images_only = _only(X_test, "image", "text")
        transfer_accuracy = transfer.score(images_only, y[test])
        image_columns = [c for c in X_test.columns if c.startswith("image__")]
        own_labels = make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=3000)
        ).fit(X_train[image_columns], y[train])
        own_accuracy = own_labels.score(X_test[image_columns], y[test])
        majority = DummyClassifier().fit(X_train, y[train]).score(X_test, y[test])
    rows.append(
        {
            "task": "image category, labels from text only (accuracy)",
            "skcrossmodal": transfer_accuracy,
            "baseline": own_accuracy,
            "chance": majority,
        }
    )

    table = pd.DataFrame(rows).set_index("task")
    print()
    print(table.to_string(float_format=lambda v: f"{v:.3f}", na_rep="-"))
    print(
        "\nbaseline: for retrieval, each modality reduced to the same width by its "
        "own PCA (no shared space);\n          for transfer, the same classifier "
        "trained on the images' own labels (what transfer approaches).\n"
        "chance: random embeddings (retrieval), the majority class (accuracy)."
    )
    _figure(figure_path, projection, X_test, y[test], emoji.target_names, table)
    return 0


def _unaligned_baseline(X_train, X_test, seed):
    """Each modality's own PCA to the shared width: no alignment is learned."""
    from sklearn.decomposition import PCA

    embeddings = {}
    for modality in ("text", "image"):
        columns = [c for c in X_train.columns if c.startswith(f"{modality}__")]
        pca = PCA(N_COMPONENTS, random_state=seed).fit(X_train[columns])
        embeddings[modality] = pca.transform(X_test[columns])
    return embeddings


def _figure(path, projection, X_test, y_test, target_names, table):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "\nmatplotlib is not installed, so no figure was written; "
            "`pip install 'skcrossmodal[demo]'` adds it."
        )
        return

    text = projection.set_params(output="text").transform(X_test)
    image = projection.set_params(output="image").transform(X_test)
    projection.set_params(output="mean")
    figure, (space, bars) = plt.subplots(1, 2, figsize=(15, 6.5))
    colours = plt.get_cmap("tab10")
    for label, name in enumerate(target_names):
        rows = y_test == label
        colour = colours(label % 10)
        space.scatter(*text[rows, :2].T, s=14, color=colour, marker="o", label=name)
        space.scatter(*image[rows, :2].T, s=18, color=colour, marker="x")
    space.set_title("Held-out emoji in the shared space (o: name text, x: image)")
    space.set_xlabel("shared component 1")
    space.set_ylabel("shared component 2")
    space.legend(fontsize=7, markerscale=1.5, loc="best")

    shown = table.fillna(0.0)
    positions = np.arange(len(shown))
    width = 0.27
    for offset, column in enumerate(shown.columns):
        bars.barh(
            positions + (offset - 1) * width, shown[column], height=width, label=column
        )
    bars.set_yticks(positions, shown.index, fontsize=7)
    bars.invert_yaxis()
    bars.set_xlabel("score (higher is better)")
    bars.set_title("Retrieval and transfer on held-out emoji")
    bars.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"\nfigure written to {path}")
