"""The demo's chance levels are exact expected values; the demo runs end to end."""

import itertools
import math

import numpy as np
import pytest

from skcrossmodal._demo import (
    expected_accuracy_of_guessing,
    expected_average_precision,
    expected_mean_average_precision,
    expected_recall_at_k,
)
from skcrossmodal.retrieval import evaluate_embeddings


def average_precision(relevant):
    """AP of one ranking, from its definition."""
    hits = np.cumsum(relevant)
    ranks = np.arange(1, len(relevant) + 1)
    return np.sum((hits / ranks)[relevant]) / relevant.sum()


@pytest.mark.parametrize("n_gallery", [1, 2, 5, 7])
def test_expected_average_precision_over_every_ranking(n_gallery):
    for n_relevant in range(1, n_gallery + 1):
        rankings = set(
            itertools.permutations(
                [True] * n_relevant + [False] * (n_gallery - n_relevant)
            )
        )
        brute_force = np.mean([average_precision(np.array(r)) for r in rankings])
        assert math.isclose(
            expected_average_precision(n_relevant, n_gallery),
            brute_force,
            rel_tol=1e-12,
        )


def test_expected_recall_at_k_over_every_position():
    n_gallery = 9
    for k in (1, 3, 9, 12):
        # The one relevant item is equally likely at each rank.
        brute_force = np.mean([rank < k for rank in range(n_gallery)])
        assert math.isclose(expected_recall_at_k(k, n_gallery), brute_force)


def test_expected_mean_average_precision_matches_random_embeddings():
    """Monte Carlo with the library's own metric: random embeddings rank at
    random, so their mAP averages to the expected value."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [3, 5, 12])
    draws = [
        evaluate_embeddings(
            rng.normal(size=(20, 4)), rng.normal(size=(20, 4)), y, y, k=1
        )["mean_average_precision"]
        for _ in range(3000)
    ]
    expected = expected_mean_average_precision(y, y)
    standard_error = np.std(draws) / np.sqrt(len(draws))
    assert abs(np.mean(draws) - expected) < 4 * standard_error


def test_expected_accuracy_of_guessing_at_the_training_frequencies():
    y_train = np.array([0, 0, 0, 1, 2, 2])
    y_test = np.array([0, 1, 1, 2, 3])
    # P(guess == y_i) is the training frequency of y_i.
    brute_force = np.mean([np.mean(y_train == label) for label in y_test])
    assert math.isclose(expected_accuracy_of_guessing(y_train, y_test), brute_force)


def test_the_demo_runs_and_draws_its_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pytest.importorskip("pandas")
    from skcrossmodal.__main__ import main

    figure = tmp_path / "demo.png"
    assert main(["demo", "--figure", str(figure)]) == 0
    printed = capsys.readouterr().out
    assert figure.stat().st_size > 10_000
    assert "exact, not a random draw" in printed
    # recall@1 of a random ranking among the 477 held-out emoji.
    assert f"{1 / 477:.3f}" in printed
