"""The Noisy MNIST settings of DeepSharedProjection, unchanged, on a second data set.

UCI Multiple Features (shipped with skcrossmodal): 2000 handwritten digits,
view 1 ``pix`` (240 pixel averages), view 2 ``fou`` (76 Fourier coefficients
of the outline). The protocol copies ``noisy_mnist.py`` at a smaller scale:
a random half of the rows (seed 0) fits the shared space without labels,
a quarter ("tune") trains a linear SVM on its view-1 projections (``C`` by
5-fold cross-validation on the tune rows), and the last quarter is the test
set. The deep model gets exactly the settings of the Noisy MNIST run
(``noisy_mnist.py``'s defaults), not retuned; the linear model is
``SharedProjection(reg="auto")``. Prints the test error of each model, with
the fit's wall and CPU time.

    python benchmarks/deep_second_dataset.py
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from noisy_mnist import deep_model, main_parser, svm_error  # noqa: E402


def main(argv=None):
    from sklearn.model_selection import train_test_split

    from skcrossmodal import SharedProjection
    from skcrossmodal.datasets import load_multiple_features

    args = main_parser().parse_args(argv)
    digits = load_multiple_features(views=["pix", "fou"])
    X = digits.data.astype(np.float32)
    rest, X_test, y_rest, y_test = train_test_split(
        X, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    X_train, X_tune, _, y_tune = train_test_split(
        rest, y_rest, test_size=1 / 3, random_state=0, stratify=y_rest
    )
    modalities = {"view1": digits.views["pix"], "view2": digits.views["fou"]}
    models = {
        "linear": SharedProjection(
            10, modalities=modalities, reg="auto", output="view1"
        ),
        "deep": deep_model(10, args).set_params(modalities=modalities, verbose=0),
    }
    print(f"train {len(X_train)}, tune {len(X_tune)}, test {len(X_test)}")
    for name, model in models.items():
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(X_train)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        error, tune_error, C = svm_error(
            model.transform(X_tune), y_tune, model.transform(X_test), y_test, 0
        )
        print(
            f"{name:7s} K=10: test error {error:5.2f} %, tune CV error "
            f"{tune_error:5.2f} % (C={C}), fit {wall:.1f} s (CPU {cpu:.1f} s), "
            f"{model.n_iter_} epoch(s)"
        )


if __name__ == "__main__":
    main()
