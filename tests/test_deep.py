"""DeepSharedProjection: gradients, the nonlinear signal it should find, API."""

import pickle

import numpy as np
import pytest
from scipy import linalg
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.externals.array_api_compat import array_namespace

from skcrossmodal import SharedProjection
from skcrossmodal._deep_loss import ey_loss_and_gradients
from skcrossmodal._deep_mlp import Encoder, dropout_mask
from skcrossmodal.deep import DeepSharedProjection

EVEN_ODD = {"even": slice(0, None, 2), "odd": slice(1, None, 2)}
AB = {"a": slice(0, 3), "b": slice(3, 6)}
NAMESPACES = ["numpy", "array_api_strict", "torch"]


def _namespace(name):
    """(namespace, device): array_api_strict on its non-default "device1",
    which refuses any conversion to numpy as a GPU array would; torch on the
    CPU (the same code runs on a GPU). Skipped when not installed."""
    if name == "numpy":
        return array_namespace(np.empty(0)), "cpu"
    if name == "array_api_strict":
        xp = pytest.importorskip("array_api_strict")
        return xp, xp.Device("device1")
    torch = pytest.importorskip("torch")
    return array_namespace(torch.empty(0)), torch.device("cpu")


def _to_numpy(array):
    if hasattr(array, "cpu"):
        return array.detach().cpu().numpy()
    if type(array).__module__.startswith("array_api_strict"):
        import array_api_strict

        return np.asarray(array.to_device(array_api_strict.Device("CPU_DEVICE")))
    return np.asarray(array)


def _namespace_name(array):
    return type(array).__module__.split(".")[0]


# -- gradients -----------------------------------------------------------------


def _ey_by_definition(Z):
    """-2 tr(A) + tr(B1 B2) with np.cov: A from both halves, B from each."""
    n = Z[0].shape[0]
    halves = [slice(0, n // 2), slice(n // 2, n)]
    A, B = 0.0, []
    for rows in halves:
        joint = np.cov(np.hstack([z[rows] for z in Z]), rowvar=False)
        k = Z[0].shape[1]
        cut = [slice(i * k, (i + 1) * k) for i in range(len(Z))]
        blocks = [[joint[r, c] for c in cut] for r in cut]
        A = (
            A
            + sum(blocks[i][j] for i in range(len(Z)) for j in range(len(Z)) if i != j)
            / 2
        )
        B.append(sum(blocks[i][i] for i in range(len(Z))))
    return -2 * np.trace(A) + np.trace(B[0] @ B[1])


def _central_difference(f, array, index, step):
    """(f(a + step e_i) - f(a - step e_i)) / 2 step, a perturbed in place
    (numpy, torch or array_api_strict: item assignment is in the standard)."""
    saved = float(array[index])
    array[index] = saved + step
    plus = float(f())
    array[index] = saved - step
    minus = float(f())
    array[index] = saved
    return (plus - minus) / (2 * step)


@pytest.mark.parametrize("n_modalities", [2, 3])
def test_ey_loss_and_gradient_against_definition_and_finite_differences(n_modalities):
    rng = np.random.default_rng(0)
    Z = [rng.normal(size=(11, 3)) for _ in range(n_modalities)]
    Z[1] += Z[0]  # correlated, so the cross term matters
    loss, grads = ey_loss_and_gradients(Z)
    assert loss == pytest.approx(_ey_by_definition(Z), rel=1e-12)
    for m in range(n_modalities):
        numeric = np.array(
            [
                _central_difference(lambda: _ey_by_definition(Z), Z[m], index, 1e-6)
                for index in np.ndindex(Z[m].shape)
            ]
        ).reshape(Z[m].shape)
        np.testing.assert_allclose(grads[m], numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_network_gradients_match_finite_differences(activation, namespace):
    """Every weight and bias of two encoders, through the loss and the decay,
    computed in each namespace (float64) and differenced there."""
    xp, device = _namespace(namespace)
    rng = np.random.default_rng(1)
    X = [rng.normal(size=(12, 4)), rng.normal(size=(12, 3))]
    X[1][:, 0] += np.tanh(X[0][:, 0])
    encoders = [
        Encoder.initialise(
            rng, x.mean(0), x.std(0), (5, 4), 2, activation, "float64", xp, device
        )
        for x in X
    ]
    X = [xp.asarray(x, device=device) for x in X]
    decay = 0.3

    def objective():
        loss, _ = ey_loss_and_gradients([e.forward(x) for e, x in zip(encoders, X)])
        return loss + 0.5 * decay * sum(e.penalty() for e in encoders)

    outputs = [e.forward(x, keep=True) for e, x in zip(encoders, X)]
    _, grads_out = ey_loss_and_gradients([out for out, _ in outputs])
    for encoder, (_, layers), grad_out in zip(encoders, outputs, grads_out):
        grads = encoder.backward(layers, grad_out, decay)
        for param, grad in zip(encoder.params, grads):
            assert _namespace_name(grad) == _namespace_name(param)
            numeric = np.array(
                [
                    _central_difference(objective, param, index, 1e-6)
                    for index in np.ndindex(tuple(param.shape))
                ]
            ).reshape(tuple(param.shape))
            # ReLU's kink: a step may cross it; 1e-6 steps rarely do with
            # these weights, and then only a few entries would differ.
            np.testing.assert_allclose(_to_numpy(grad), numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("namespace", NAMESPACES)
def test_dccae_gradients_match_finite_differences(namespace, masked):
    """With decoders (DCCAE): every weight and bias of the encoders and the
    decoders, through the Eckhart-Young loss, the reconstruction error of
    the standardised input and the decay, against an objective written out
    from the forward passes alone. ``masked``: with input dropout, the
    encoders see the standardised input times a mask (fed here to networks
    sharing their weights but not their standardisation) and the decoders
    rebuild the clean input."""
    from skcrossmodal._deep_train import batch_loss_and_gradients, network_params

    xp, device = _namespace(namespace)
    rng = np.random.default_rng(2)
    X = [rng.normal(size=(10, 4)), rng.normal(size=(10, 3))]
    X[1][:, 0] += np.tanh(X[0][:, 0])
    shift, scale = [x.mean(0) for x in X], [x.std(0) for x in X]
    encoders = [
        Encoder.initialise(rng, m, s, (5,), 2, "tanh", "float64", xp, device)
        for m, s in zip(shift, scale)
    ]
    decoders = [
        Encoder.decoder(rng, 2, (6,), x.shape[1], "tanh", "float64", xp, device)
        for x in X
    ]
    standardised = [
        xp.asarray((x - m) / s, device=device) for x, m, s in zip(X, shift, scale)
    ]
    X = [xp.asarray(x, device=device) for x in X]
    decay, weight = 0.3, 0.7
    masks, inputs, fed = None, X, encoders
    if masked:
        noise = np.random.default_rng(3)
        masks = [
            dropout_mask(noise, x.shape, 0.4, e.coefs[0]) for x, e in zip(X, encoders)
        ]
        inputs = [s * m for s, m in zip(standardised, masks)]
        fed = [
            Encoder(e.coefs, e.intercepts, None, None, e.activation) for e in encoders
        ]

    def objective():
        outputs = [e.forward(x) for e, x in zip(fed, inputs)]
        loss, _ = ey_loss_and_gradients(outputs)
        for d, z, target in zip(decoders, outputs, standardised):
            error = d.forward(z) - target
            loss = loss + weight * xp.mean(error * error)
        networks = [*encoders, *decoders]
        return loss + 0.5 * decay * sum(n.penalty() for n in networks)

    loss, grads = batch_loss_and_gradients(encoders, X, decay, decoders, weight, masks)
    assert float(loss) == pytest.approx(float(objective()), rel=1e-12)
    params = network_params(dict(enumerate(encoders)), dict(enumerate(decoders)))
    assert len(grads) == len(params)
    for param, grad in zip(params, grads):
        numeric = np.array(
            [
                _central_difference(objective, param, index, 1e-6)
                for index in np.ndindex(tuple(param.shape))
            ]
        ).reshape(tuple(param.shape))
        np.testing.assert_allclose(_to_numpy(grad), numeric, rtol=1e-5, atol=1e-7)


# -- what it finds ---------------------------------------------------------------


def _nonlinear_views(n, rng):
    """View a carries a 2-d latent z linearly; view b = z**2 (even in z).

    z is symmetric, so Cov(z, z**2) = 0: no linear map of a correlates with
    any linear map of b, but a squaring encoder on a matches b exactly.
    """
    z = rng.normal(size=(n, 2))
    mixing = np.array([[1.0, 0.5, -0.3], [0.2, -1.0, 0.7]])
    a = z @ mixing + 0.05 * rng.normal(size=(n, 3))
    b = np.hstack([z**2, rng.normal(size=(n, 1))]) + 0.05 * rng.normal(size=(n, 3))
    return np.hstack([a, b])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_finds_nonlinear_signal_that_linear_cca_cannot():
    rng = np.random.default_rng(0)
    X_train, X_test = _nonlinear_views(3000, rng), _nonlinear_views(2000, rng)
    deep = DeepSharedProjection(
        n_components=2,
        modalities=AB,
        hidden_layer_sizes=(64, 64),
        batch_size=256,
        learning_rate_init=3e-3,
        max_iter=60,
        random_state=0,
    )
    deep.fit(X_train)
    linear = SharedProjection(n_components=2, modalities=AB).fit(X_train)
    # Held-out: mean Pearson correlation of the components on new rows.
    assert linear.score(X_test) < 0.15
    assert deep.score(X_test) > 0.9


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_linear_encoders_reach_the_closed_form_cca():
    """hidden_layer_sizes=() is linear CCA trained by gradient: its canonical
    correlations must match the closed form's (scipy's generalised eigh)."""
    rng = np.random.default_rng(3)
    latent = rng.normal(size=(2000, 2))
    a = latent @ rng.normal(size=(2, 4)) + rng.normal(size=(2000, 4))
    b = latent @ rng.normal(size=(2, 4)) + rng.normal(size=(2000, 4))
    X = np.hstack([a, b])
    model = DeepSharedProjection(
        n_components=2,
        modalities={"a": slice(0, 4), "b": slice(4, 8)},
        hidden_layer_sizes=(),
        learning_rate_init=1e-2,
        max_iter=150,
        dtype="float64",
        random_state=0,
    ).fit(X)
    C = np.cov(X, rowvar=False, bias=True)
    cross = np.zeros_like(C)
    cross[:4, 4:], cross[4:, :4] = C[:4, 4:], C[4:, :4]
    within = C.copy()
    within[:4, 4:] = within[4:, :4] = 0
    expected = linalg.eigh(cross, within, eigvals_only=True)[::-1][:2]
    np.testing.assert_allclose(model.canonical_correlations_, expected, atol=5e-3)


# -- reproducibility and the API ------------------------------------------------


def _small(**params):
    defaults = dict(
        n_components=2, modalities=AB, hidden_layer_sizes=(16,), max_iter=5,
        random_state=0,
    )  # fmt: skip
    defaults.update(params)
    return DeepSharedProjection(**defaults)


@pytest.fixture
def X_small():
    return _nonlinear_views(300, np.random.default_rng(5))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_random_state_reproducible(X_small):
    first = _small().fit(X_small)
    second = _small().fit(X_small)
    other = _small(random_state=1).fit(X_small)
    for name in AB:
        for w1, w2, w3 in zip(
            first.coefs_[name], second.coefs_[name], other.coefs_[name]
        ):
            np.testing.assert_allclose(w1, w2, rtol=1e-6)
            assert not np.allclose(w1, w3)
    np.testing.assert_allclose(
        first.transform(X_small), second.transform(X_small), rtol=1e-5
    )


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_dtypes_and_output(X_small):
    model = _small(output="concat").fit(X_small)
    assert model.coefs_["a"][0].dtype == np.float32
    assert model.transform(X_small).dtype == np.float64
    assert model.transform(X_small.astype(np.float32)).dtype == np.float32
    assert model.transform(X_small).shape == (300, 4)
    assert list(model.get_feature_names_out()) == [
        "a__deepsharedprojection0", "a__deepsharedprojection1",
        "b__deepsharedprojection0", "b__deepsharedprojection1",
    ]  # fmt: skip
    wide = _small(dtype="float64").fit(X_small)
    assert wide.coefs_["b"][1].dtype == np.float64


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_missing_modality_at_transform(X_small):
    model = _small(output="mean").fit(X_small)
    only_a = X_small.copy()
    only_a[:, 3:] = np.nan
    a_alone = clone(model).set_params(output="a").fit(X_small).transform(X_small)
    np.testing.assert_allclose(model.transform(only_a), a_alone, rtol=1e-5, atol=1e-6)
    assert np.isfinite(model.transform(X_small)).all()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_early_stopping_keeps_best_epoch(X_small, capsys):
    model = _small(early_stopping=True, max_iter=30, n_iter_no_change=3, verbose=1)
    model.fit(X_small)
    scores = model.validation_scores_
    assert len(scores) == model.n_iter_ == len(model.loss_curve_)
    assert model.best_validation_score_ == max(scores)
    assert "validation correlation" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_partial_fit_and_warm_start_continue(X_small):
    model = _small()
    model.partial_fit(X_small)
    first = [w.copy() for w in model.coefs_["a"]]
    model.partial_fit(X_small)
    assert model.n_iter_ == 2
    assert model.t_ == 2  # 300 rows, batch_size "auto" = 256: 1 batch an epoch
    assert not np.allclose(first[0], model.coefs_["a"][0])
    warm = _small(warm_start=True).fit(X_small)
    before = [w.copy() for w in warm.coefs_["a"]]
    warm.fit(X_small)
    assert warm.n_iter_ == 10
    cold = _small().fit(X_small)
    np.testing.assert_allclose(cold.coefs_["a"][0], before[0], rtol=1e-6)
    assert not np.allclose(warm.coefs_["a"][0], before[0])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_pickle_is_small_and_round_trips(X_small):
    model = _small(hidden_layer_sizes=(64,)).fit(X_small)
    n_weights = sum(w.size for ws in model.coefs_.values() for w in ws)
    blob = pickle.dumps(model)
    # float32 weights: 4 bytes each; Adam's moments would triple it.
    assert len(blob) < 4 * n_weights * 1.5 + 20000
    restored = pickle.loads(blob)
    np.testing.assert_array_equal(restored.transform(X_small), model.transform(X_small))
    restored.partial_fit(X_small)  # fresh Adam moments after unpickling


def _reconstruction_error(model, X):
    """Each modality's mean squared error of its decoder's rebuild of the
    standardised input, from the fitted arrays (not the training code)."""
    errors = {}
    for name, columns in AB.items():
        h = (X[:, columns] - model.input_mean_[name]) / model.input_scale_[name]
        target = h.copy()
        layers = list(zip(model.coefs_[name], model.intercepts_[name]))
        layers += list(zip(model.decoder_coefs_[name], model.decoder_intercepts_[name]))
        last_encoder, last = len(model.coefs_[name]) - 1, len(layers) - 1
        for i, (W, b) in enumerate(layers):
            h = h @ W + b
            if i not in (last_encoder, last):  # linear outputs
                h = np.maximum(h, 0)
        errors[name] = float(np.mean((h - target) ** 2))
    return errors


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_reconstruction_weight_trades_correlation_for_rebuilt_inputs(X_small):
    """a carries the latent z linearly, b carries z**2: the CCA code of a is
    z**2, which loses z's sign, so a cannot be rebuilt from a code of two
    that b also predicts. A weak reconstruction term keeps the correlation
    and rebuilds b; a strong one rebuilds a too, at the correlation's cost."""

    def dccae(weight):
        return _small(
            max_iter=40, batch_size=32, reconstruction=weight, hidden_layer_sizes=(32,)
        )

    assert not hasattr(_small().fit(X_small), "decoder_coefs_")
    untrained = dccae(1.0).set_params(max_iter=1, learning_rate_init=1e-12)
    drawn = _reconstruction_error(untrained.fit(X_small), X_small)
    weak, strong = dccae(0.1).fit(X_small), dccae(10.0).fit(X_small)
    assert [w.shape for w in weak.decoder_coefs_["a"]] == [(2, 32), (32, 3)]
    weak_error = _reconstruction_error(weak, X_small)
    strong_error = _reconstruction_error(strong, X_small)
    assert weak.canonical_correlations_.min() > 0.9
    # b's third column is noise no shared code carries: a third of its variance.
    assert weak_error["b"] < 0.5 < drawn["b"]
    assert strong_error["a"] < 0.2 < 0.8 < weak_error["a"]
    assert strong.canonical_correlations_[0] < 0.9

    restored = pickle.loads(pickle.dumps(weak))
    np.testing.assert_array_equal(
        restored.decoder_coefs_["b"][0], weak.decoder_coefs_["b"][0]
    )
    steps = restored.t_
    restored.partial_fit(X_small)  # continues encoders and decoders
    assert restored.t_ == steps + 9  # 300 // 32 batches (the rest spread)
    assert not np.allclose(restored.decoder_coefs_["b"][0], weak.decoder_coefs_["b"][0])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_reconstruction_turned_on_for_a_warm_start_draws_decoders(X_small):
    model = _small(warm_start=True).fit(X_small)
    encoder = [w.copy() for w in model.coefs_["a"]]
    model.set_params(reconstruction=0.5).fit(X_small)
    assert len(model.decoder_coefs_["a"]) == 2
    assert not np.allclose(model.coefs_["a"][0], encoder[0])  # continued
    model.set_params(reconstruction=0.0).partial_fit(X_small)  # decoders idle
    assert np.isfinite(model.transform(X_small)).all()
    # Decoders mirror the encoders the model has, not hidden_layer_sizes as
    # changed since (a warm start keeps the encoders).
    fresh = _small(warm_start=True, hidden_layer_sizes=(16, 8)).fit(X_small)
    fresh.set_params(hidden_layer_sizes=(5,), reconstruction=0.5).fit(X_small)
    assert [w.shape for w in fresh.coefs_["a"]] == [(3, 16), (16, 8), (8, 2)]
    assert [w.shape for w in fresh.decoder_coefs_["a"]] == [(2, 8), (8, 16), (16, 3)]


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_dropout_mask_zeroes_the_rate_and_keeps_the_expectation(namespace):
    """Binomial bounds: 200 000 draws at rate 0.3 put the zeroed fraction
    within 0.3 +- 0.005 (over 7 standard deviations)."""
    xp, device = _namespace(namespace)
    like = xp.zeros(1, dtype=xp.float32, device=device)
    mask = dropout_mask(np.random.default_rng(0), (400, 500), 0.3, like)
    assert _namespace_name(mask) == namespace and mask.dtype == xp.float32
    values = _to_numpy(mask)
    assert set(np.unique(values)) == {0.0, np.float32(1 / 0.7)}
    assert abs((values == 0).mean() - 0.3) < 0.005
    assert abs(values.mean() - 1.0) < 0.01


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_input_dropout_trains_on_masked_inputs_and_transforms_whole_ones(X_small):
    """Reproducible with random_state; other weights than without it; 0 is
    exactly the model without it; transform is deterministic (no mask)."""
    plain = _small().fit(X_small)
    zero = _small(input_dropout=0.0).fit(X_small)
    dropped = _small(input_dropout=0.3).fit(X_small)
    again = _small(input_dropout=0.3).fit(X_small)
    np.testing.assert_array_equal(zero.coefs_["a"][0], plain.coefs_["a"][0])
    np.testing.assert_array_equal(again.coefs_["a"][0], dropped.coefs_["a"][0])
    assert not np.allclose(dropped.coefs_["a"][0], plain.coefs_["a"][0])
    np.testing.assert_array_equal(
        dropped.transform(X_small), dropped.transform(X_small)
    )
    # The signal survives the noise: the latent is still found.
    assert dropped.canonical_correlations_[0] > 0.8
    # partial_fit masks too: a first epoch from the same initial weights and
    # batches differs only by the masks, which random_state reproduces.
    masked = _small(input_dropout=0.3).partial_fit(X_small)
    np.testing.assert_array_equal(
        _small(input_dropout=0.3).partial_fit(X_small).coefs_["a"][0],
        masked.coefs_["a"][0],
    )
    whole = _small().partial_fit(X_small)
    assert not np.allclose(masked.coefs_["a"][0], whole.coefs_["a"][0])


@pytest.mark.parametrize(
    "params, message",
    [
        ({"output": "c"}, "output='c'"),
        ({"reconstruction": -1.0}, "'reconstruction' parameter"),
        ({"input_dropout": 1.0}, "'input_dropout' parameter"),
        ({"modalities": {"a": slice(0, 3), "b": slice(3, 3)}}, "at least one column"),
        ({"early_stopping": True, "validation_fraction": 0.99}, "validation_fraction"),
    ],
)
def test_bad_parameters(params, message):
    X = _nonlinear_views(40, np.random.default_rng(0))
    with pytest.raises(ValueError, match=message):
        _small(**params).fit(X)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_modalities_from_feature_names_and_missing_rows_in_fit(X_small):
    pd = pytest.importorskip("pandas")
    columns = [f"a__{i}" for i in range(3)] + [f"b__{i}" for i in range(3)]
    X = X_small.copy()
    X[:40, 3:] = np.nan  # modality b missing in 40 rows
    frame = pd.DataFrame(X, columns=columns)
    model = _small(modalities=None).fit(frame)
    assert {name: list(idx) for name, idx in model.modalities_.items()} == {
        "a": [0, 1, 2],
        "b": [3, 4, 5],
    }
    # The rows missing b still fit the final linear CCA (and a's scaling).
    assert model.n_samples_seen_ == 300
    np.testing.assert_allclose(
        model.input_mean_["a"], X_small[:, :3].mean(axis=0), rtol=1e-5
    )
    np.testing.assert_allclose(
        model.input_mean_["b"], X_small[40:, 3:].mean(axis=0), rtol=1e-5
    )
    assert np.isfinite(model.transform(frame)).all()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_adaptive_learning_rate_divides_by_5_after_two_stale_epochs(X_small, capsys):
    # tol far above any change: no epoch after the first makes progress.
    model = _small(learning_rate="adaptive", tol=1e6, max_iter=5, verbose=1)
    model.set_params(n_iter_no_change=10).fit(X_small)
    rates = [
        float(line.split("learning rate ")[1].split(",")[0])
        for line in capsys.readouterr().out.splitlines()
    ]
    assert rates == pytest.approx([1e-3, 1e-3, 2e-4, 2e-4, 4e-5])


# -- array API: the same code in every namespace ---------------------------------
#
# Measured (float64, this machine): the loss and its gradient in torch and
# array_api_strict equal numpy's to 3e-16 relative; after 4 epochs of Adam
# (5 batches of 60 rows each) the weights of the torch fit differ from
# numpy's by 3.6e-11 relative to their largest entry and the transforms by
# 3.6e-13 (array_api_strict, numpy underneath: 0) -- the same arithmetic in
# another order, grown by Adam's normalised steps. Tested at 1e-8: far above
# that, far below the size of one Adam step (1e-3), which any difference in
# the batches, the initialisation or the maths would show.


@pytest.fixture
def dispatch(monkeypatch):
    """scikit-learn's array_api_dispatch (it checks SCIPY_ARRAY_API first;
    nothing here calls scipy on these arrays)."""
    import sklearn

    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    with sklearn.config_context(array_api_dispatch=True):
        yield


@pytest.mark.parametrize("namespace", NAMESPACES[1:])
def test_loss_and_gradient_equal_numpy_in_other_namespaces(namespace):
    xp, device = _namespace(namespace)
    rng = np.random.default_rng(4)
    Z = [rng.normal(size=(15, 3)) for _ in range(3)]
    Z[2] += Z[0]
    loss, grads = ey_loss_and_gradients(Z)
    loss_xp, grads_xp = ey_loss_and_gradients([xp.asarray(z, device=device) for z in Z])
    assert float(loss_xp) == pytest.approx(loss, rel=1e-12)
    for g, g_xp in zip(grads, grads_xp):
        assert _namespace_name(g_xp) == namespace
        np.testing.assert_allclose(_to_numpy(g_xp), g, rtol=1e-12, atol=1e-12)


def _four_epochs(**params):
    return _small(
        hidden_layer_sizes=(8, 8), batch_size=60, max_iter=4, dtype="float64",
        **params,
    )  # fmt: skip


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("namespace", NAMESPACES[1:])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("reconstruction, input_dropout", [(0.0, 0.0), (0.5, 0.3)])
def test_fit_in_a_namespace_equals_the_numpy_fit(
    X_small, namespace, activation, reconstruction, input_dropout, dispatch
):
    """Same random_state: same initial weights, same batches, the same input
    masks, the same Adam steps; the weights (the decoders' too, with a
    reconstruction term), correlations and outputs match numpy's, and live
    in X's namespace and device."""
    xp, device = _namespace(namespace)
    X_xp = xp.asarray(X_small, device=device)
    params = dict(
        activation=activation,
        output="concat",
        reconstruction=reconstruction,
        input_dropout=input_dropout,
    )
    expected = _four_epochs(**params).fit(X_small)
    model = _four_epochs(**params).fit(X_xp)
    arrays = ["coefs_", "intercepts_"]
    if reconstruction:
        arrays += ["decoder_coefs_", "decoder_intercepts_"]
    for name in AB:
        for mine, theirs in zip(
            [w for a in arrays for w in getattr(model, a)[name]],
            [w for a in arrays for w in getattr(expected, a)[name]],
        ):
            assert _namespace_name(mine) == namespace
            assert mine.device == X_xp.device
            scale = np.abs(theirs).max()
            np.testing.assert_allclose(
                _to_numpy(mine), theirs, rtol=1e-8, atol=1e-8 * scale
            )
    assert _namespace_name(model.canonical_correlations_) == namespace
    np.testing.assert_allclose(
        _to_numpy(model.canonical_correlations_),
        expected.canonical_correlations_,
        rtol=1e-8,
    )
    Z = model.transform(X_xp)
    assert _namespace_name(Z) == namespace and Z.device == X_xp.device
    np.testing.assert_allclose(
        _to_numpy(Z), expected.transform(X_small), rtol=1e-8, atol=1e-8
    )
    assert model.score(X_xp) == pytest.approx(expected.score(X_small), rel=1e-8)
    assert model.loss_curve_ == pytest.approx(expected.loss_curve_, rel=1e-8)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("namespace", NAMESPACES[1:])
def test_namespace_float32_early_stopping_missing_rows_and_pickle(
    X_small, namespace, dispatch
):
    """The default float32 in a namespace: weights float32 there, output in
    X's dtype; early stopping, a modality missing in some rows (the final
    linear CCA runs on the host, which takes them) and partial_fit after a
    pickle round trip all stay in the namespace."""
    xp, device = _namespace(namespace)
    X = X_small.copy()
    X[:30, 3:] = np.nan
    X32 = xp.asarray(X.astype(np.float32), device=device)
    model = _small(early_stopping=True, max_iter=6).fit(X32)
    assert model.coefs_["a"][0].dtype == xp.float32
    assert _namespace_name(model.coefs_["b"][1]) == namespace
    assert len(model.validation_scores_) == model.n_iter_
    Z = model.transform(X32)
    assert Z.dtype == xp.float32 and Z.device == X32.device
    Z = _to_numpy(Z)
    assert np.isfinite(Z).all()  # "mean" of the present modalities
    assert model.n_samples_seen_ == 300
    # Same fit in numpy: float32 rounding apart, the same network.
    expected = _small(early_stopping=True, max_iter=6).fit(X.astype(np.float32))
    np.testing.assert_allclose(
        _to_numpy(model.coefs_["a"][0]), expected.coefs_["a"][0], atol=1e-4
    )
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(_to_numpy(restored.transform(X32)), Z)
    restored.partial_fit(X32)
    assert _namespace_name(restored.coefs_["a"][0]) == namespace
    assert restored.n_iter_ == model.n_iter_ + 1


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_transform_refuses_another_namespace_and_warm_start_moves(X_small, dispatch):
    torch = pytest.importorskip("torch")
    model = _small(warm_start=True, reconstruction=0.5)
    model.fit(torch.asarray(X_small))
    with pytest.raises(ValueError, match="must use the same namespace"):
        model.transform(X_small)
    # A warm start on numpy data moves the encoders (and the decoders) to
    # numpy and continues.
    before = model.coefs_["a"][0].numpy().copy()
    decoder_before = model.decoder_coefs_["a"][0].numpy().copy()
    model.fit(X_small)
    assert isinstance(model.coefs_["a"][0], np.ndarray)
    assert isinstance(model.decoder_coefs_["a"][0], np.ndarray)
    assert model.n_iter_ == 10
    assert not np.allclose(model.coefs_["a"][0], before)
    assert not np.allclose(model.decoder_coefs_["a"][0], decoder_before)


@pytest.mark.filterwarnings("error::sklearn.exceptions.ConvergenceWarning")
def test_cosine_learning_rate_follows_half_a_cosine(X_small, capsys):
    """The rate of each epoch's last step (printed), against the formula:
    300 rows in batches of 60 are 5 steps an epoch, the last at 4/5."""
    model = _small(learning_rate="cosine", batch_size=60, max_iter=4, verbose=1)
    model.fit(X_small)
    rates = [
        float(line.split("learning rate ")[1].split(",")[0])
        for line in capsys.readouterr().out.splitlines()
    ]
    done = (np.arange(4) + 0.8) / 4
    expected = 1e-3 * 0.5 * (1 + np.cos(np.pi * done))
    assert rates == pytest.approx(expected, rel=0.006)  # printed to 3 digits
    # partial_fit after it steps at learning_rate_init again, not at ~0.
    assert model._optimizer.learning_rate == 1e-3
    # max_iter is the schedule's end, not a failure to converge (no warning,
    # which this test turns into an error); other schedules still warn.
    with pytest.warns(ConvergenceWarning, match="max_iter=4"):
        _small(batch_size=60, max_iter=4).fit(X_small)


def test_encoders_wider_than_memory_are_refused_naming_the_parameter():
    # Two hidden layers of a million units: 4e12 weights per modality. Refused
    # before anything is allocated, naming the parameter (numpy's own
    # MemoryError names a shape, and a request just under the machine's
    # memory would be granted and swap).
    X = np.random.default_rng(0).normal(size=(50, 6))
    before = X.copy()
    model = DeepSharedProjection(
        2,
        modalities={"a": slice(0, 3), "b": slice(3, 6)},
        hidden_layer_sizes=(10**6, 10**6),
        max_iter=1,
    )
    with pytest.raises(MemoryError, match=r"hidden_layer_sizes=\(1000000, 1000000\)"):
        model.fit(X)
    np.testing.assert_array_equal(X, before)
    assert not hasattr(model, "coefs_")


# -- input scaling ----------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("scaling", ["feature", "modality"])
def test_input_scaling_divides_by_the_documented_deviation(X_small, scaling):
    # Independent computation: numpy's std per feature, or the root mean
    # variance of the modality's features, from every training row.
    model = _small(input_scaling=scaling, dtype="float64").fit(X_small)
    for name, columns in AB.items():
        block = X_small[:, columns]
        np.testing.assert_allclose(model.input_mean_[name], block.mean(axis=0))
        expected = (
            block.std(axis=0)
            if scaling == "feature"
            else np.full(block.shape[1], np.sqrt(block.var(axis=0).mean()))
        )
        np.testing.assert_allclose(model.input_scale_[name], expected, rtol=1e-10)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_input_scaling_is_unit_free_and_keeps_relative_scales(X_small):
    # Both choices ignore the modality's unit (multiplying all of it by 1e6
    # changes nothing); only "feature" also ignores one feature's unit, so
    # "modality" keeps the relative scales of its features.
    first = next(iter(AB.values()))
    column = first.start if isinstance(first, slice) else first[0]
    rescaled_modality = X_small.copy()
    rescaled_modality[:, first] *= 1e6
    rescaled_feature = X_small.copy()
    rescaled_feature[:, column] *= 100.0
    for scaling in ("feature", "modality"):
        base = _small(input_scaling=scaling, dtype="float64").fit(X_small)
        unit = _small(input_scaling=scaling, dtype="float64").fit(rescaled_modality)
        np.testing.assert_allclose(
            unit.transform(rescaled_modality),
            base.transform(X_small),
            rtol=1e-6,
            atol=1e-8,
        )
        one = _small(input_scaling=scaling, dtype="float64").fit(rescaled_feature)
        same = np.allclose(
            one.transform(rescaled_feature),
            base.transform(X_small),
            rtol=1e-6,
            atol=1e-8,
        )
        assert same is (scaling == "feature")


def test_input_scaling_is_validated(X_small):
    with pytest.raises(ValueError, match="input_scaling"):
        _small(input_scaling="pixel").fit(X_small)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "change",
    [lambda X: X + 1e8, lambda X: X * 1e40, lambda X: X * 1e-40],
    ids=["offset 1e8", "units 1e40", "units 1e-40"],
)
def test_float32_encoders_standardise_in_float64(X_small, change):
    # The encoders compute in float32, but X is standardised in float64
    # first: casting first left steps of 8 around an offset of 1e8 (the
    # signal gone, silently), and made 1e40 infinite ("no modality present").
    # Standardised alike, the changed data train like the original.
    base = _small(dtype="float32").fit(X_small)
    changed = _small(dtype="float32").fit(change(X_small))
    np.testing.assert_allclose(
        changed.transform(change(X_small)), base.transform(X_small), atol=2e-3
    )
    assert changed.input_mean_["a"].dtype == np.float64


def test_values_beyond_the_standardisation_dtype_are_refused(X_small, monkeypatch):
    # On a device without float64 (torch MPS) the standardisation runs in
    # float32: values beyond its range get a clear error, not NaN outputs.
    import skcrossmodal._deep_fitted as fitted

    monkeypatch.setattr(fitted, "accumulation_dtype", lambda xp, device: xp.float32)
    with pytest.raises(ValueError, match="float32 .*Rescale X"):
        _small().fit(X_small * 1e40)
