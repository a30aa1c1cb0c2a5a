"""Rebuild ``skcrossmodal/datasets/data/emoji.npz`` from the npm registry.

Needs ``npm`` on PATH plus NumPy and Pillow (Pillow is only needed here, it
is not a runtime dependency of skcrossmodal)::

    pip install numpy pillow
    python scripts/build_emoji.py                 # fetches with `npm pack`
    python scripts/build_emoji.py --tarball emoji-datasource-twitter-16.0.0.tgz

Source: the npm package ``emoji-datasource-twitter`` (emoji-data by Cal
Henderson). Its ``emoji.json`` (MIT) gives names, short names and categories;
its ``img/twitter/64/*.png`` are the Twemoji graphics (CC-BY 4.0, Twitter, Inc
and other contributors). The tarball is read in place, never unpacked into the
repository.

For every base emoji (skin-tone variations are skipped: they would add
near-duplicate images with near-duplicate texts) we keep

* ``text``: the lower-cased Unicode-style name followed by the short names
  with ``_`` turned into spaces (a short name equal to the name is left out),
* ``images``: the 64x64 PNG composited onto white, then box-averaged to
  32x32 RGB ``uint8``,
* ``target``: the index of its category in ``target_names``, in the order of
  the package's ``categories.json``; the tiny "Component" category (five skin
  tone swatches) is dropped.

The output is written deterministically: the same tarball and the same
Pillow/zlib give the same bytes (fixed zip timestamps, fixed member order).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from _archive import save_npz
from PIL import Image

PACKAGE = "emoji-datasource-twitter"
DEFAULT_VERSION = "16.0.0"
IMAGE_SIZE = 32
DROPPED_CATEGORIES = ("Component",)
OUT = (
    Path(__file__).resolve().parents[1]
    / "skcrossmodal"
    / "datasets"
    / "data"
    / "emoji.npz"
)


def npm_pack(version: str, dest: Path) -> Path:
    """Download the package tarball into ``dest`` with ``npm pack``."""
    result = subprocess.run(
        ["npm", "pack", f"{PACKAGE}@{version}", "--silent"],
        cwd=dest,
        check=True,
        capture_output=True,
        text=True,
    )
    # `npm pack --silent` prints only the tarball's file name.
    return dest / result.stdout.strip().splitlines()[-1]


def to_image(png: bytes) -> np.ndarray:
    """Return the PNG as (32, 32, 3) uint8, composited onto white."""
    # Some PNGs are palette images with a transparent index; RGBA first so the
    # transparency survives the compositing.
    rgba = Image.open(io.BytesIO(png)).convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    # Composite before shrinking, so edges blend towards white rather than
    # towards the (arbitrary) colour of transparent pixels. BOX is an exact
    # 2x2 mean for the 64 -> 32 case.
    small = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8)


def emoji_text(entry: dict) -> str:
    name = entry["name"].lower()
    parts = [name]
    for short in entry["short_names"]:
        spaced = short.replace("_", " ")
        if spaced != name and spaced not in parts:
            parts.append(spaced)
    return " ".join(parts)


def build(tarball: Path) -> dict[str, np.ndarray]:
    # One sequential pass over the tarball: random access into a .tgz
    # re-decompresses from the start on every backward seek, which is slow.
    wanted = ("package.json", "emoji.json", "categories.json", "img/twitter/64/")
    files: dict[str, bytes] = {}
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            name = member.name.removeprefix("package/")
            if member.isfile() and name.startswith(wanted):
                files[name] = tar.extractfile(member).read()

    meta = json.loads(files["package.json"])
    entries = json.loads(files["emoji.json"])
    categories = list(json.loads(files["categories.json"]))
    target_names = [c for c in categories if c not in DROPPED_CATEGORIES]
    code = {name: i for i, name in enumerate(target_names)}

    # sort_order is the package's canonical emoji order (unique per entry),
    # so the row order does not depend on the JSON's layout.
    entries = sorted(entries, key=lambda e: e["sort_order"])
    texts, images, targets, unified, chars = [], [], [], [], []
    for entry in entries:
        if entry["category"] in DROPPED_CATEGORIES:
            continue
        png = files.get(f"img/twitter/64/{entry['image']}")
        if not entry.get("has_img_twitter") or png is None:
            continue
        if entry["category"] not in code:
            raise ValueError(f"unknown category {entry['category']!r}")
        images.append(to_image(png))
        texts.append(emoji_text(entry))
        targets.append(code[entry["category"]])
        unified.append(entry["unified"])
        codepoints = entry["unified"].split("-")
        chars.append("".join(chr(int(cp, 16)) for cp in codepoints))

    return {
        "images": np.stack(images),
        "text": np.array(texts, dtype=str),
        "target": np.array(targets, dtype=np.uint8),
        "target_names": np.array(target_names, dtype=str),
        "unified": np.array(unified, dtype=str),
        "emoji": np.array(chars, dtype=str),
        "source": np.array(f"{meta['name']} {meta['version']}"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=DEFAULT_VERSION, help="npm version")
    parser.add_argument("--tarball", type=Path, help="use this .tgz, no download")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tarball = args.tarball or npm_pack(args.version, Path(tmp))
        digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
        arrays = build(tarball)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_npz(args.out, arrays)

    counts = np.bincount(arrays["target"], minlength=len(arrays["target_names"]))
    print(f"source: {arrays['source']} (sha256 {digest})")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    print(f"{len(arrays['text'])} emoji")
    for name, count in zip(arrays["target_names"], counts, strict=True):
        print(f"  {count:5d}  {name}")
    print(f"sha256 of output: {hashlib.sha256(args.out.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
