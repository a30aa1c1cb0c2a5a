"""The reproducible ``.npz`` writer shared by the ``build_*.py`` scripts."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an ``.npz`` that ``np.load`` reads like ``np.savez_compressed``'s.

    ``np.savez_compressed`` stamps every member with the current time, so its
    bytes change on every run; writing the members ourselves with a fixed
    timestamp (and fixed member order, permissions and compression) makes
    the file reproducible: the same arrays give the same bytes.
    """
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(
                buffer, np.asarray(array, order="C"), allow_pickle=False
            )
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(
                info,
                buffer.getvalue(),
                compress_type=zipfile.ZIP_DEFLATED,
                compresslevel=9,
            )
