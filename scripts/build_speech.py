"""Rebuild ``skcrossmodal/datasets/data/speech.npz`` from two Debian packages.

Needs ``apt-get`` and ``dpkg-deb`` (any Debian or Ubuntu system) plus NumPy
and SciPy; skcrossmodal itself computes the features, so run it from the
repository root::

    python scripts/build_speech.py                    # fetches with apt-get
    python scripts/build_speech.py --debs DIR         # DIR holds both .deb files

Source: Debian's ``asterisk-core-sounds-en-wav`` (568 WAV clips, 8 kHz 16-bit
mono, the English core prompts of the Asterisk PBX recorded by Allison Smith,
CC-BY-SA-3.0) and ``asterisk-core-sounds-en`` (its ``core-sounds-en.txt.gz``
holds the transcript of every prompt). The packages are unpacked into a
temporary folder, never into the repository.

For every clip we keep

* ``name``: its path without ``.wav``, e.g. ``"digits/7"``,
* ``text``: the transcript, e.g. ``"seven"``,
* ``target``: its category (see ``CATEGORIES``), from its name and transcript,
* ``duration``: the length of the original recording in seconds,
* ``features``: the 212 pooled log-mel and MFCC features of
  ``AudioFeaturizer(sample_rate=8000)`` on the trimmed clip, as float32.

For the 182 short words (folders ``digits``, ``letters`` and ``phonetic``) the
trimmed waveforms themselves are kept too, as 16-bit PCM (``audio``, all
clips end to end, and ``audio_offsets``). Trimming drops the leading and
trailing quiet samples (below ``TRIM_LEVEL``), keeping ``TRIM_MARGIN`` of them
on each side; the samples in between are unchanged.

The output is written deterministically: the same packages and the same
NumPy/SciPy give the same bytes (fixed zip timestamps, fixed member order).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _archive import save_npz
from scipy.io import wavfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skcrossmodal.audio import AudioFeaturizer  # noqa: E402

PACKAGES = ("asterisk-core-sounds-en-wav", "asterisk-core-sounds-en")
SOUNDS = "usr/share/asterisk/sounds/en_US_f_Allison"
TRANSCRIPTS = "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
SAMPLE_RATE = 8000
WORD_FOLDERS = ("digits", "letters", "phonetic")
# |sample| below this (about -54 dBFS) counts as quiet at the ends of a clip.
TRIM_LEVEL = 64
TRIM_MARGIN = 400  # samples, 50 ms at 8 kHz
FEATURE_PARAMS = {"sample_rate": SAMPLE_RATE}
CATEGORIES = (
    "number",
    "ordinal",
    "month",
    "weekday",
    "letter",
    "symbol",
    "nato",
    "other word",
    "phrase",
    "non-speech",
)
OUT = ROOT / "skcrossmodal" / "datasets" / "data" / "speech.npz"


def category(name: str, text: str) -> str:
    folder, _, stem = name.rpartition("/")
    if text.startswith("[") or folder == "silence":
        return "non-speech"
    if folder == "digits":
        if stem.isdigit() or stem in ("hundred", "thousand", "million", "billion"):
            return "number"
        if stem.startswith("h-"):
            return "ordinal"
        if stem.startswith("mon-"):
            return "month"
        if stem.startswith("day-"):
            return "weekday"
        return "other word"
    if folder == "letters":
        return "letter" if len(stem) == 1 or stem == "zed" else "symbol"
    if folder == "phonetic":
        return "nato"
    return "phrase"


def apt_download(dest: Path) -> None:
    subprocess.run(["apt-get", "download", *PACKAGES], cwd=dest, check=True)


def unpack(debs: Path, dest: Path) -> dict[str, str]:
    """Extract both packages into ``dest``; return their versions."""
    versions = {}
    for package in PACKAGES:
        (deb,) = sorted(debs.glob(f"{package}_*_all.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
        version = subprocess.run(
            ["dpkg-deb", "-f", str(deb), "Version"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        digest = hashlib.sha256(deb.read_bytes()).hexdigest()
        versions[package] = version
        print(f"{deb.name}: sha256 {digest}")
    return versions


def read_transcripts(path: Path) -> dict[str, str]:
    transcripts = {}
    with gzip.open(path, "rt", encoding="utf-8") as file:
        for line in file:
            line = line.strip()
            if not line or line.startswith(";"):
                continue
            name, _, text = line.partition(":")
            transcripts[name.strip()] = " ".join(text.split())
    return transcripts


def trim(samples: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) >= TRIM_LEVEL)
    if loud.size == 0:  # nothing above the level: keep the clip as it is
        return samples
    start = max(loud[0] - TRIM_MARGIN, 0)
    stop = min(loud[-1] + 1 + TRIM_MARGIN, len(samples))
    return samples[start:stop]


def build(tree: Path, versions: dict[str, str]) -> dict[str, np.ndarray]:
    transcripts = read_transcripts(tree / TRANSCRIPTS)
    sounds = tree / SOUNDS
    names = sorted(
        path.relative_to(sounds).with_suffix("").as_posix()
        for path in sounds.rglob("*.wav")
    )
    missing = [name for name in names if name not in transcripts]
    if missing:
        raise ValueError(f"no transcript for {missing}")
    # Word clips first (in name order), then the rest: the word subset is
    # then the first rows, and its waveforms line up with them.
    is_word = [name.split("/")[0] in WORD_FOLDERS for name in names]
    names = [n for n, w in zip(names, is_word) if w] + [
        n for n, w in zip(names, is_word) if not w
    ]
    n_words = sum(is_word)

    clips, durations = [], []
    for name in names:
        rate, samples = wavfile.read(sounds / f"{name}.wav")
        if rate != SAMPLE_RATE or samples.dtype != np.int16 or samples.ndim != 1:
            raise ValueError(f"{name}: expected 8 kHz 16-bit mono")
        durations.append(len(samples) / rate)
        clips.append(trim(samples))

    featurizer = AudioFeaturizer(**FEATURE_PARAMS)
    features = featurizer.transform([clip.astype(np.float64) / 32768 for clip in clips])
    words = clips[:n_words]
    offsets = np.concatenate([[0], np.cumsum([len(clip) for clip in words])])
    texts = [transcripts[name] for name in names]
    return {
        "name": np.array(names, dtype=str),
        "text": np.array(texts, dtype=str),
        "target": np.array(
            [CATEGORIES.index(category(n, t)) for n, t in zip(names, texts)],
            dtype=np.uint8,
        ),
        "target_names": np.array(CATEGORIES, dtype=str),
        "duration": np.array(durations, dtype=np.float32),
        "features": features.astype(np.float32),
        "feature_names": np.array(featurizer.get_feature_names_out(), dtype=str),
        "feature_params": np.array(json.dumps(FEATURE_PARAMS, sort_keys=True)),
        "audio": np.concatenate(words).astype("<i2"),
        "audio_offsets": offsets.astype(np.int64),
        "sample_rate": np.array(SAMPLE_RATE, dtype=np.int64),
        "source": np.array("; ".join(f"Debian {p} {v}" for p, v in versions.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--debs", type=Path, help="folder with both .deb files")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        debs = args.debs
        if debs is None:
            debs = tmp / "debs"
            debs.mkdir()
            apt_download(debs)
        versions = unpack(debs, tmp / "tree")
        arrays = build(tmp / "tree", versions)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_npz(args.out, arrays)

    counts = np.bincount(arrays["target"], minlength=len(CATEGORIES))
    print(f"source: {arrays['source']}")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    print(f"{len(arrays['name'])} clips, {len(arrays['audio_offsets']) - 1} with audio")
    for name, count in zip(CATEGORIES, counts, strict=True):
        print(f"  {count:5d}  {name}")
    print(f"sha256 of output: {hashlib.sha256(args.out.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
