"""Cross-modal retrieval and transfer on text + image data, against baselines.

    python benchmarks/transfer_retrieval.py                  # emoji if bundled
    python benchmarks/transfer_retrieval.py --data digits    # digits halves
    python benchmarks/transfer_retrieval.py --splits 2 --skip-scale

Data: the bundled Twemoji set (``skcrossmodal.datasets.load_emoji``: each
emoji's name as text, its 32x32 picture as image, 9 categories) when it is
importable, else scikit-learn's digits with the left and right image halves
as the two modalities. Each split holds out 30 % of the rows (stratified);
everything is fitted on the other 70 %, and the tables give the mean (and
standard deviation) over ``--splits`` splits.

Features per modality (fitted on the training rows): text, TF-IDF of the
words then TruncatedSVD(128); image, PCA(128) of the pixels in [0, 1]. The
Nystroem composition adds, per modality, a scaler and an RBF ``Nystroem``
map of 500 landmarks, then the same ``SharedProjection``: an approximate
kernel CCA.

Retrieval (held-out rows; queries of one modality rank the held-out rows of
the other; relevance = same category, ties by gallery index):

- chance: the expectation under a random ranking (exact, from the
  hypergeometric law, computed here for each query);
- raw PCA, cosine: each modality's features reduced to the same k by its own
  PCA and compared as if they lived in one space (no alignment: what raw
  features give without a learned map);
- ridge map: a ridge regression from the query modality's features to the
  gallery modality's features, fitted on the training pairs, then cosine in
  the gallery's feature space (a learned, non-CCA baseline on raw features);
- SharedProjection (linear) and its Nystroem composition; ``n_components``
  and ``reg`` chosen by GridSearchCV on the training rows with a label-free
  scorer (paired retrieval: the mean reciprocal rank of each row's own
  pair), and, for the linear space, once more with the label-mAP scorer
  (labels used for model selection only).

"paired" columns: instance retrieval, only the query's own pair relevant.

Transfer (test rows carry only the target modality): the shared space is
pre-trained on the training pairs without labels; a logistic regression is
fitted on the embeddings of training rows that carry only the source
modality and their labels (CrossModalTransferClassifier), and predicts test
rows that carry only the target modality. Against: the same classifier with
labels on the target modality's own rows; logistic regression on the target
modality's raw features; the majority class.

Scale (skipped by ``--skip-scale``): the Nystroem composition with 2000
landmarks per modality on 30 000 rows of 2000 raw features per modality
(time, peak resident memory); ``rank`` of 100 000 queries against 100 000
gallery rows (k=10).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import gammaln
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import GridSearchCV, KFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer, StandardScaler

from skcrossmodal import SharedProjection
from skcrossmodal.metrics import make_retrieval_scorer
from skcrossmodal.retrieval import embed, evaluate_embeddings, rank
from skcrossmodal.transfer import CrossModalTransferClassifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakMemory, format_bytes  # noqa: E402

REGS = ["auto", 0.01, 0.1]


def say(*args):
    print(*args, flush=True)


# -- data ------------------------------------------------------------------------------


def load(choice):
    """(modality names, raw inputs per modality, y, description)."""
    if choice in ("auto", "emoji"):
        try:
            from skcrossmodal.datasets import load_emoji

            emoji = load_emoji()
        except (ImportError, FileNotFoundError, OSError) as exc:
            if choice == "emoji":
                raise
            say(f"(emoji data not available: {exc}; using digits halves)")
        else:
            return (
                ("text", "image"),
                {"text": np.asarray(emoji.text), "image": emoji.data / 255.0},
                np.asarray(emoji.target),
                "Twemoji (bundled): emoji names + 32x32 pictures, 9 categories",
            )
    from sklearn.datasets import load_digits

    digits = load_digits()
    left = (np.arange(64) % 8) < 4
    return (
        ("left", "right"),
        {"left": digits.data[:, left], "right": digits.data[:, ~left]},
        digits.target,
        "scikit-learn digits: left / right image halves, 10 classes",
    )


def featurisers(names):
    """One unfitted featuriser per modality."""
    out = {}
    for name in names:
        if name == "text":
            out[name] = make_pipeline(
                TfidfVectorizer(sublinear_tf=True), TruncatedSVD(128, random_state=0)
            )
        elif name == "image":
            out[name] = PCA(128, random_state=0)
        else:  # digits halves: 32 pixels each
            out[name] = StandardScaler()
    return out


def nystroem_maps(names, n_components=500):
    """Per-modality RBF feature maps on top of the features."""
    out = {}
    for name in names:
        first = Normalizer() if name == "text" else StandardScaler()
        gamma = 1.0 if name == "text" else None  # None: 1 / n_features
        out[name] = make_pipeline(
            first, Nystroem(gamma=gamma, n_components=n_components, random_state=0)
        )
    return out


def frame(blocks):
    """DataFrame with '<modality>__<j>' columns, the blocks side by side."""
    columns, arrays = [], []
    for name, block in blocks.items():
        columns += [f"{name}__f{j}" for j in range(block.shape[1])]
        arrays.append(block)
    return pd.DataFrame(np.hstack(arrays), columns=columns)


def only(F, name):
    """Copy of F carrying only modality `name` (the others NaN: missing)."""
    values = F.to_numpy(dtype=float, copy=True)
    values[:, ~F.columns.str.startswith(f"{name}__")] = np.nan
    return pd.DataFrame(values, columns=F.columns, index=F.index)


# -- retrieval baselines ---------------------------------------------------------------


def chance(y_query, y_gallery, ks):
    """Expected metrics of a uniformly random ranking, query by query."""
    n = len(y_gallery)
    counts = {label: int(np.sum(y_gallery == label)) for label in np.unique(y_gallery)}
    aps, recalls = [], {k: [] for k in ks}
    ranks = np.arange(1, n + 1)
    for label in y_query:
        r = counts.get(label, 0)
        if r == 0:
            continue
        # E[AP] = (1/R) sum_j E[precision at the j-th relevant item]; by
        # linearity: sum over ranks p of P(rank p relevant) * E[hits<=p | it]/p.
        # P(relevant at p) = R/n; E[hits up to p | relevant at p] =
        # 1 + (p-1)(R-1)/(n-1).
        hits = 1 + (ranks - 1) * (r - 1) / max(n - 1, 1)
        aps.append(np.sum((r / n) * hits / ranks) / r)
        for k in ks:
            # P(no relevant item in the top k) = C(n-R, k) / C(n, k)
            if k > n - r:
                recalls[k].append(1.0)
                continue
            log_none = (
                gammaln(n - r + 1)
                - gammaln(n - r - k + 1)
                - gammaln(n + 1)
                + gammaln(n - k + 1)
            )
            recalls[k].append(1 - np.exp(log_none))
    return {
        "mean_average_precision": float(np.mean(aps)),
        **{f"recall@{k}": float(np.mean(recalls[k])) for k in ks},
    }


def raw_pca(features, train, test, query, gallery, k):
    Z = {
        name: PCA(k, random_state=0)
        .fit(features[name][train])
        .transform(features[name][test])
        for name in (query, gallery)
    }
    return Z[query], Z[gallery]


def ridge_map(features, train, test, query, gallery):
    model = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(
        features[query][train], features[gallery][train]
    )
    return model.predict(features[query][test]), features[gallery][test]


# -- one split -------------------------------------------------------------------------


def grid(F):
    """n_components: the three largest of 4, 8, ..., 64 that every modality allows."""
    widths = {}
    for column in F.columns:
        name = column.split("__")[0]
        widths[name] = widths.get(name, 0) + 1
    narrowest = min(widths.values())
    sizes = [k for k in (4, 8, 16, 32, 64) if k <= narrowest][-3:]
    return {"n_components": sizes, "reg": REGS}


def tune(F_train, seed, y_train=None):
    """GridSearchCV over SharedProjection with a retrieval scorer.

    Without labels: the mean reciprocal rank of each row's own pair (paired
    relevance, label-free like the pre-training). With labels: label mAP.
    """
    search = GridSearchCV(
        SharedProjection(),
        grid(F_train),
        scoring=make_retrieval_scorer("mean_average_precision"),
        cv=KFold(3, shuffle=True, random_state=seed),
    ).fit(F_train, y_train)
    return search.best_estimator_, search.best_params_


def transfer_scores(F, y, train, test, names, params):
    """Accuracy on test rows carrying only the target modality."""
    out = {}
    F_train, F_test = F.iloc[train], F.iloc[test]
    unlabelled = np.full(len(train), -1)
    for source in names:
        for target in names:
            labelled = only(F_train, source)
            X = pd.concat([F_train, labelled], ignore_index=True)
            clf = CrossModalTransferClassifier(
                SharedProjection(**params), LogisticRegression(max_iter=3000)
            ).fit(X, np.concatenate([unlabelled, y[train]]))
            out[(source, target)] = clf.score(only(F_test, target), y[test])
    return out


def one_split(names, raw, y, seed, ks=(1, 10)):
    train, test = train_test_split(
        np.arange(len(y)), test_size=0.3, stratify=y, random_state=seed
    )
    features = {}
    for name, featuriser in featurisers(names).items():
        featuriser.fit(raw[name][train])
        features[name] = featuriser.transform(raw[name])
    kernel = {}
    for name, feature_map in nystroem_maps(names).items():
        feature_map.fit(features[name][train])
        kernel[name] = feature_map.transform(features[name])
    F, F_kernel = frame(features), frame(kernel)

    retrieval, transfer, chosen = {}, {}, {}
    clock = time.perf_counter()
    linear, chosen["linear"] = tune(F.iloc[train], seed)
    by_label, chosen["linear, label mAP"] = tune(F.iloc[train], seed, y[train])
    nystroem, chosen["nystroem"] = tune(F_kernel.iloc[train], seed)
    say(f"  tuning: {time.perf_counter() - clock:.0f} s")
    k_linear = chosen["linear"]["n_components"]
    pairs = [(names[0], names[1]), (names[1], names[0])]
    for query, gallery in pairs:
        y_test = y[test]
        n_test = len(test)
        rows = {"chance": chance(y_test, y_test, ks)}
        # Paired chance: the pair is uniformly placed among n_test rows.
        rows["chance"]["paired recall@10"] = 10 / n_test
        rows["chance"]["paired median rank"] = (n_test + 1) / 2
        embeddings = {
            f"raw PCA (k={k_linear}), cosine": raw_pca(
                features, train, test, query, gallery, k_linear
            ),
            "ridge map to the gallery's features": ridge_map(
                features, train, test, query, gallery
            ),
        }
        for method, model, data in (
            ("SharedProjection, linear", linear, F),
            ("SharedProjection, linear, tuned on label mAP", by_label, F),
            ("SharedProjection + Nystroem", nystroem, F_kernel),
        ):
            embeddings[method] = (
                embed(model, data.iloc[test], query),
                embed(model, data.iloc[test], gallery),
            )
        for method, (Z_query, Z_gallery) in embeddings.items():
            rows[method] = evaluate_embeddings(Z_query, Z_gallery, y_test, y_test, k=ks)
            # Paired (instance) retrieval: only the query's own pair counts.
            paired = evaluate_embeddings(Z_query, Z_gallery, k=ks)
            rows[method]["paired recall@10"] = paired["recall@10"]
            rows[method]["paired median rank"] = paired["median_rank"]
        retrieval[(query, gallery)] = rows

    clock = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        transfer["linear"] = transfer_scores(F, y, train, test, names, chosen["linear"])
        transfer["nystroem"] = transfer_scores(
            F_kernel, y, train, test, names, chosen["nystroem"]
        )
        for name in names:
            own = LogisticRegression(max_iter=3000).fit(features[name][train], y[train])
            transfer[("raw", name)] = own.score(features[name][test], y[test])
    say(f"  transfer: {time.perf_counter() - clock:.0f} s")
    values, counts = np.unique(y[train], return_counts=True)
    transfer["majority"] = float(np.mean(y[test] == values[np.argmax(counts)]))
    return retrieval, transfer, chosen


# -- reporting -------------------------------------------------------------------------


def mean_std(values):
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f} ± {values.std():.3f}"


def report(names, results):
    retrievals = [r for r, _, _ in results]
    transfers = [t for _, t, _ in results]
    say(f"\nChosen (n_components, reg) per split: {[c for _, _, c in results]}")
    for query, gallery in ((names[0], names[1]), (names[1], names[0])):
        say(f"\n## Retrieval {query} -> {gallery} (label relevance; mean ± std)")
        keys = ["mean_average_precision", "recall@1", "recall@10"]
        say("| method | mAP | recall@1 | recall@10 | paired R@10 | paired MedR |")
        say("|---|---|---|---|---|---|")
        for method in retrievals[0][(query, gallery)]:
            cells = [
                mean_std([r[(query, gallery)][method][key] for r in retrievals])
                for key in keys
            ]
            for key in ("paired recall@10", "paired median rank"):
                cells.append(
                    mean_std([r[(query, gallery)][method][key] for r in retrievals])
                )
            say(f"| {method} | " + " | ".join(cells) + " |")

    say("\n## Transfer: accuracy on held-out rows carrying only the target modality")
    say("| labels on -> predict | linear shared space | Nystroem shared space |")
    say("|---|---|---|")
    for source in names:
        for target in names:
            kind = "in-modality" if source == target else "TRANSFER"
            cells = [
                mean_std([t[space][(source, target)] for t in transfers])
                for space in ("linear", "nystroem")
            ]
            say(f"| {source} -> {target} ({kind}) | " + " | ".join(cells) + " |")
    for name in names:
        say(
            f"| raw features, {name} -> {name} (LogisticRegression) | "
            f"{mean_std([t[('raw', name)] for t in transfers])} | |"
        )
    say(f"| majority class | {mean_std([t['majority'] for t in transfers])} | |")


# -- scale -----------------------------------------------------------------------------


def scale_nystroem(n=30_000, width=2000, landmarks=2000, n_test=5000, seed=0):
    """Approximate kernel CCA with thousands of features per modality."""
    from skcrossmodal.compose import make_modality_transformer

    rng = np.random.default_rng(seed)
    latent = rng.uniform(-2, 2, size=(n + n_test, 4))
    # Each modality is a different nonlinear function of the latent signal,
    # spread over `width` noisy raw features.
    X = np.hstack(
        [
            np.tanh(latent @ rng.normal(size=(4, width))),
            (latent**2) @ rng.normal(size=(4, width)) / 4,
        ]
    )
    X += 0.5 * rng.standard_normal(X.shape)
    X_train, X_test = X[:n], X[n:]
    del X
    halves = {"a": slice(0, width), "b": slice(width, 2 * width)}
    model = make_pipeline(
        make_modality_transformer(
            *(
                (name, Nystroem(n_components=landmarks, random_state=0), columns)
                for name, columns in halves.items()
            )
        ),
        SharedProjection(n_components=10, reg=1e-3),
    )
    with PeakMemory() as peak:
        start = time.perf_counter()
        model.fit(X_train)
        seconds = time.perf_counter() - start
    linear = SharedProjection(n_components=10, reg=1e-3, modalities=halves)
    start = time.perf_counter()
    linear.fit(X_train)
    linear_seconds = time.perf_counter() - start
    say(
        f"\n## Scale: Nystroem composition, n={n}, {width}+{width} raw features, "
        f"{landmarks}+{landmarks} landmarks"
    )
    say(
        f"fit {seconds:.1f} s; peak extra resident memory {format_bytes(peak.bytes)} "
        f"(X itself: {format_bytes(X_train.nbytes)}; the Nystroem features "
        f"{format_bytes(n * 2 * landmarks * 8)})"
    )
    say(
        f"held-out mean canonical correlation (10 components, {n_test} rows): "
        f"Nystroem {model.score(X_test):.3f}; linear on the raw features "
        f"{linear.score(X_test):.3f} (fit {linear_seconds:.1f} s)"
    )


def scale_rank(n=100_000, k=10, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 16))
    X = np.hstack(
        [latent @ rng.normal(size=(16, 32)), latent @ rng.normal(size=(16, 32))]
    )
    X += 0.3 * rng.standard_normal(X.shape)
    projection = SharedProjection(
        n_components=16, modalities={"a": slice(0, 32), "b": slice(32, 64)}
    ).fit(X)
    with PeakMemory() as peak:
        start = time.perf_counter()
        _, indices = rank(projection, X, query_modality="a", gallery_modality="b", k=k)
        seconds = time.perf_counter() - start
    hit = np.mean((indices == np.arange(n)[:, None]).any(axis=1))
    say(f"\n## Scale: rank {n} queries x {n} gallery rows, k={k}, 16 components")
    say(
        f"{seconds:.1f} s; peak extra resident memory {format_bytes(peak.bytes)} "
        f"(the full similarity matrix would be {format_bytes(8 * n * n)}); "
        f"own pair in the top {k}: {hit:.3f}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["auto", "emoji", "digits"], default="auto")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args(argv)

    names, raw, y, description = load(args.data)
    say(f"data: {description}; {len(y)} rows")
    results = []
    start = time.perf_counter()
    for seed in range(args.splits):
        results.append(one_split(names, raw, y, seed))
        say(f"split {seed} done ({time.perf_counter() - start:.0f} s)")
    report(names, results)
    if not args.skip_scale:
        scale_nystroem()
        scale_rank()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
