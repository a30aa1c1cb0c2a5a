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
        mapped = _ridge_map_baseline(X_train, X_test)
        n_gallery = len(test)
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
                predicted, actual = mapped[query, gallery]
                baseline = evaluate_embeddings(
                    predicted, actual, labels, labels, k=(1, 10)
                )
                for metric in metrics:
                    name = "mAP" if metric == "mean_average_precision" else metric
                    if metric == "mean_average_precision":
                        chance = expected_mean_average_precision(y[test], y[test])
                    else:
                        chance = expected_recall_at_k(int(metric[7:]), n_gallery)
                    rows.append(
                        {
                            "task": f"{query}->{gallery} {name} ({relevance})",
                            "skcrossmodal": ours[metric],
                            "baseline": baseline[metric],
                            "chance": chance,
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
    rows.append(
        {
            "task": "image category, labels from text only (accuracy)",
            "skcrossmodal": transfer_accuracy,
            "baseline": own_accuracy,
            "chance": expected_accuracy_of_guessing(y[train], y[test]),
        }
    )

    table = pd.DataFrame(rows).set_index("task")
    print()
    print(table.to_string(float_format=lambda v: f"{v:.3f}", na_rep="-"))
    print(
        "\nbaseline: for retrieval, a ridge regression from the query modality's "
        "features to the\n          gallery modality's, fitted on the training "
        "pairs (no shared space);\n          for transfer, the same classifier "
        "trained on the images' own labels\n          (what transfer approaches, "
        "without any image label).\n"
        "chance: the expected value of a random ranking (recall@k = k / "
        f"{len(test)}; mAP from each\n        query's number of same-category "
        "items) and of guessing categories at\n        the training frequencies "
        "(accuracy); exact, not a random draw."
    )
    _figure(
        figure_path,
        projection,
        X_test,
        y[test],
        emoji.target_names,
        table,
        texts=np.asarray(emoji.text)[test],
        images=emoji.images[test],
    )
    return 0


def _ridge_map_baseline(X_train, X_test):
    """Retrieval without a shared space: regress one modality on the other.

    For each direction, a RidgeCV maps the query modality's features to the
    gallery modality's (fitted on the training pairs); the gallery is ranked
    by cosine between each query's predicted features and the gallery's
    actual ones. Returns {(query, gallery): (predicted, actual)}.
    """
    from sklearn.linear_model import RidgeCV

    columns = {
        modality: [c for c in X_train.columns if c.startswith(f"{modality}__")]
        for modality in ("text", "image")
    }
    mapped = {}
    for query, gallery in (("text", "image"), ("image", "text")):
        ridge = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(
            X_train[columns[query]].to_numpy(), X_train[columns[gallery]].to_numpy()
        )
        mapped[query, gallery] = (
            ridge.predict(X_test[columns[query]].to_numpy()),
            X_test[columns[gallery]].to_numpy(),
        )
    return mapped


def expected_recall_at_k(k, n_gallery):
    """recall@k of a uniformly random ranking with one relevant item: k / n."""
    return min(k, n_gallery) / n_gallery


def expected_average_precision(n_relevant, n_gallery):
    """Expected average precision of a uniformly random ranking.

    With R relevant items among N, the item at rank j is relevant with
    probability R/N and, given that, the j-1 items above it hold on average
    (j-1)(R-1)/(N-1) relevant ones, so

        E[AP] = (1/N) sum_j (1 + (j-1)(R-1)/(N-1)) / j
              = (H_N + (R-1)/(N-1) (N - H_N)) / N,

    with H_N the N-th harmonic number (R = 1 gives the expected reciprocal
    rank H_N / N; R = N gives 1).
    """
    n_relevant = np.asarray(n_relevant, dtype=float)
    harmonic = np.sum(1.0 / np.arange(1, n_gallery + 1))
    if n_gallery == 1:
        return np.ones_like(n_relevant)
    slope = (n_relevant - 1) / (n_gallery - 1)
    return (harmonic + slope * (n_gallery - harmonic)) / n_gallery


def expected_mean_average_precision(y_query, y_gallery):
    """Expected mAP of random rankings when relevant means the same label."""
    y_gallery = np.asarray(y_gallery)
    labels, counts = np.unique(y_gallery, return_counts=True)
    n_relevant = dict(zip(labels.tolist(), counts.tolist()))
    per_query = [n_relevant.get(label, 0) for label in np.asarray(y_query).tolist()]
    has = np.array(per_query) > 0
    values = np.where(
        has, expected_average_precision(np.maximum(per_query, 1), y_gallery.size), 0.0
    )
    return float(values.mean())


def expected_accuracy_of_guessing(y_train, y_test):
    """Accuracy expected when guessing each category at its training frequency."""
    labels = np.union1d(y_train, y_test)
    train = np.array([np.mean(np.asarray(y_train) == c) for c in labels])
    test = np.array([np.mean(np.asarray(y_test) == c) for c in labels])
    return float(train @ test)


# Example retrievals drawn in the figure: the first held-out emoji of these
# categories (Smileys & Emotion, Animals & Nature, Food & Drink, Travel &
# Places, Flags), chosen before looking at the results.
EXAMPLE_CATEGORIES = (0, 2, 3, 4, 8)
EXAMPLE_K = 6


def _figure(path, projection, X_test, y_test, target_names, table, *, texts, images):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
    except ImportError:
        print(
            "\nmatplotlib is not installed, so no figure was written; "
            "`pip install 'skcrossmodal[demo]'` adds it."
        )
        return
    from .retrieval import rank

    text = projection.set_params(output="text").transform(X_test)
    image = projection.set_params(output="image").transform(X_test)
    projection.set_params(output="mean")

    figure = plt.figure(figsize=(15, 11), layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=[6.2, 4.8])
    space, bars = top.subplots(1, 2)

    colours = plt.get_cmap("tab10")
    for label, name in enumerate(target_names):
        rows = y_test == label
        colour = colours(label % 10)
        space.scatter(*text[rows, :2].T, s=14, color=colour, marker="o", label=name)
        space.scatter(*image[rows, :2].T, s=18, color=colour, marker="x")
    space.set_title("Held-out emoji in the shared space")
    space.set_xlabel("shared component 1")
    space.set_ylabel("shared component 2")
    categories = space.legend(
        fontsize=7, markerscale=1.5, loc="upper left", title="category (colour)"
    )
    space.add_artist(categories)
    markers = [
        Line2D([], [], color="0.3", marker="o", ls="", label="name (text)"),
        Line2D([], [], color="0.3", marker="x", ls="", label="picture (image)"),
    ]
    space.legend(handles=markers, fontsize=8, loc="lower right", title="modality")

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

    # Example retrievals: a held-out name, and the pictures nearest to it in
    # the shared space among all held-out pictures (its own framed in green).
    queries = [
        int(np.flatnonzero(y_test == category)[0])
        for category in EXAMPLE_CATEGORIES
        if (y_test == category).any()
    ]
    found = rank(
        projection,
        X_test.iloc[queries],
        X_test,
        query_modality="text",
        gallery_modality="image",
        k=EXAMPLE_K,
        return_distance=False,
    )
    bottom.suptitle(
        f"Query: a held-out emoji's name; its {EXAMPLE_K} nearest pictures among "
        f"all {len(y_test)} held-out ones (green frame: the emoji's own picture)",
        fontsize=10,
    )
    cells = bottom.subplots(len(queries), EXAMPLE_K + 1, squeeze=False)
    for row, (query, hits) in enumerate(zip(queries, found)):
        label_axis = cells[row, 0]
        label_axis.axis("off")
        name = str(texts[query])
        label_axis.text(
            1.0,
            0.5,
            name if len(name) <= 34 else name[:32] + "...",
            ha="right",
            va="center",
            fontsize=9,
            transform=label_axis.transAxes,
        )
        for column, hit in enumerate(hits, start=1):
            axis = cells[row, column]
            axis.imshow(images[hit])
            axis.set_xticks([])
            axis.set_yticks([])
            own = hit == query
            for spine in axis.spines.values():
                spine.set_visible(own)
                spine.set_color("tab:green")
                spine.set_linewidth(3)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"\nfigure written to {path}")
