"""Browsing a concept dataset: a summary of its concepts, and one image beside its masks."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import ConfigError
from .colornames import COLOR_NAMES, FOCAL_RGB
from .probe import ProbeSet


def summarize(probe: ProbeSet, top: int = 10) -> str:
    """A plain-text summary: images, splits, concepts per category, the most frequent ones."""
    counts = probe.info["counts"]
    lines = [f"{probe.path}",
             f"  images: {counts['images']} (train {counts['train']}, val {counts['val']}), "
             f"{probe.image_size}px, masks {probe.mask_size}px, "
             f"skipped {counts.get('skipped', 0)}",
             f"  sources: " + ", ".join(f"{s['name']} ({s['samples']})"
                                        for s in probe.info["sources"]),
             f"  concepts: {len(probe.concepts)}"
             f" (dropped as rare: {counts.get('dropped_rare_concepts', 0)})",
             f"  fingerprint: {probe.fingerprint[:16]}"]
    by_cat = Counter(c.category for c in probe.concepts)
    for cat in probe.categories:
        concepts = sorted((c for c in probe.concepts if c.category == cat),
                          key=lambda c: -c.frequency)
        level = probe.info["categories"][cat]["level"]
        layers = probe.info["categories"][cat].get("layers")
        extra = f", {layers} layer(s)" if layers and layers > 1 else ""
        lines.append(f"  {cat:<9} {by_cat[cat]:>4} concepts ({level}-level{extra}): " +
                     ", ".join(f"{c.name} {c.frequency}" for c in concepts[:top]))
    return "\n".join(lines)


def _palette(n: int) -> np.ndarray:
    """``n`` distinct, stable colors (golden-angle hues); index 0 is black for 'no label'."""
    hues = (np.arange(n) * 0.618033988749895) % 1.0
    h6 = hues * 6
    x = 1 - np.abs(h6 % 2 - 1)
    i = h6.astype(int) % 6
    rgb = np.zeros((n, 3))
    order = np.array([[0, 1, 2], [1, 0, 2], [2, 0, 1], [2, 1, 0], [1, 2, 0], [0, 2, 1]])
    vals = np.stack([np.ones(n), x, np.zeros(n)], axis=1)
    rgb[np.arange(n)[:, None], order[i]] = vals
    out = (40 + rgb * 200).astype(np.uint8)
    out[0] = 0
    return out


def render_sample(probe: ProbeSet, index: int, scale: int = 2) -> Image.Image:
    """An image of row ``index`` beside one panel per label layer, with a legend per panel."""
    if not 0 <= index < len(probe):
        raise ConfigError(f"--index {index}: the dataset has rows 0..{len(probe) - 1}")
    sample = probe.annotations(index)
    names = {c.id: c.name for c in probe.concepts}
    palette = _palette(probe.num_columns)
    for c in probe.concepts:  # color concepts are drawn in their own color
        if c.category == "color" and c.name in COLOR_NAMES:
            palette[c.id] = FOCAL_RGB[c.name]
    side = probe.image_size * scale
    panels: list[tuple[str, Image.Image, list[int]]] = [
        ("image", Image.fromarray(sample.image).resize((side, side), Image.Resampling.NEAREST),
         [])]
    for cat, layers in sample.pixel.items():
        for j, layer in enumerate(layers):
            colored = Image.fromarray(palette[layer]).resize((side, side),
                                                             Image.Resampling.NEAREST)
            ids = [int(i) for i in np.unique(layer) if i > 0]
            title = cat if len(layers) == 1 else f"{cat} {j + 1}"
            panels.append((title, colored, ids))
    font = ImageFont.load_default()
    legend_rows = max((len(ids) for _, _, ids in panels), default=0)
    tags = [f"{cat}: " + ", ".join(names.get(i, str(i)) for i in ids)
            for cat, ids in sample.image_labels.items() if ids]
    width = len(panels) * (side + 8) + 8
    height = side + 36 + 14 * legend_rows + 16 * len(tags) + 8
    sheet = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 6), f"{sample.id} ({sample.split})", fill=(20, 20, 20), font=font)
    for k, (title, panel, ids) in enumerate(panels):
        x = 8 + k * (side + 8)
        sheet.paste(panel, (x, 22))
        draw.text((x, 24 + side), title, fill=(20, 20, 20), font=font)
        for r, cid in enumerate(ids):
            y = 38 + side + 14 * r
            draw.rectangle((x, y + 2, x + 9, y + 11), fill=tuple(int(v) for v in palette[cid]))
            draw.text((x + 14, y), names.get(cid, str(cid)), fill=(20, 20, 20), font=font)
    for t, tag in enumerate(tags):
        draw.text((8, height - 8 - 16 * (len(tags) - t)), tag, fill=(20, 20, 20), font=font)
    return sheet


def save_sample(probe: ProbeSet, index: int, out: Path) -> Path:
    """Write ``render_sample`` to ``out`` (PNG, or the image type its suffix names)."""
    from ..io import write_bytes
    from ..paths import output_file

    out = output_file(out)
    kind = Image.registered_extensions().get(out.suffix.lower())
    if kind is None:
        raise ConfigError(f"--out {out}: {out.suffix or 'no suffix'} is not an image type",
                          hint="name a .png (or .jpg) file")
    buffer = io.BytesIO()
    render_sample(probe, index).convert("RGB").save(buffer, kind)
    return write_bytes(out, buffer.getvalue())
