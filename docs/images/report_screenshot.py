"""Make docs/images/report.png: a report of real photos, opened in headless Chromium.

    python docs/images/report_screenshot.py [--model MODEL] [--output docs/images/report.png]

The photos are scikit-image's bundled sample photographs (public domain / CC0: NASA's astronaut
and rocket, Chelsea the cat, a cup of coffee, ...). Each "listing" holds one photo and degraded
copies of it (blurred, under-exposed, noisy, heavily compressed), so a quality model has a clear
best photo to mark; one listing also holds a file that is not an image, to show the failure list.
``--model`` defaults to the bundled default model (a model file or bundled name works too).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from browser_screenshot import screenshot  # noqa: E402

LISTINGS = {
    "listing_1042_cat": "chelsea",
    "listing_2210_cafe": "coffee",
    "listing_3307_launch": "rocket",
}


def _degraded(image: Image.Image, seed: int) -> dict[str, Image.Image]:
    rng = np.random.default_rng(seed)
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 28, (image.height, image.width, 3))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=4)
    return {
        "original.jpg": image,
        "blurred.jpg": image.filter(ImageFilter.GaussianBlur(4)),
        "dark.jpg": ImageEnhance.Brightness(image).enhance(0.35),
        "noisy.jpg": Image.fromarray(noisy.clip(0, 255).astype(np.uint8)),
        "compressed.jpg": Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"),
    }


def write_photos(root: Path) -> Path:
    from skimage import data

    for index, (listing, name) in enumerate(LISTINGS.items()):
        folder = root / listing
        folder.mkdir(parents=True)
        photo = Image.fromarray(getattr(data, name)()).convert("RGB")
        for file_name, image in _degraded(photo, index).items():
            image.save(folder / file_name, quality=92)
    (root / "listing_2210_cafe" / "menu.jpg").write_bytes(b"this upload is not an image")
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="Model file or bundled name (default: the bundled default)")
    parser.add_argument("--output", default="docs/images/report.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1340)
    args = parser.parse_args()
    output = Path(args.output).resolve()
    with tempfile.TemporaryDirectory(prefix="nima-rt-report-") as tmp:
        photos = write_photos(Path(tmp) / "photos")
        page = Path(tmp) / "report.html"
        command = [sys.executable, "-c", "from nima_rt.cli import main; main()", "report", photos.name,
                   "-o", page.name, "--title", "Hotel photos: best first in each listing"]
        if args.model:
            model = Path(args.model)
            command += ["--model", str(model.resolve()) if model.exists() else args.model]
        subprocess.run(command, check=True, cwd=tmp)  # relative paths on the page
        shot = screenshot(page, output, args.width, args.height)
    with Image.open(shot) as image:  # 256 colours: a third of the bytes, no visible loss at this size
        palette = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    palette.save(shot, optimize=True)
    print(f"wrote {shot} ({shot.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
