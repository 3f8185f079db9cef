"""A tiny in-memory source with known masks, for builder and reader tests."""

from __future__ import annotations

import numpy as np

from builder.datasets.sources.base import SourceConcept, SourceSample
from builder.errors import BadSampleError


class FakeSource:
    """Images of a square (code 1 'box', part 3 'lid' on its top half) on a floor (code 2);
    scenes alternate 'room' (4) and 'hall' (5); every 7th sample is corrupt if ``bad``."""

    name = "fake"

    def __init__(self, n: int = 12, size: int = 32, bad: bool = False, rare: bool = False):
        self.n, self.size, self.bad, self.rare = n, size, bad, rare

    def concepts(self):
        c = [SourceConcept(1, "box", "object"), SourceConcept(2, "floor", "object"),
             SourceConcept(3, "lid", "part"), SourceConcept(4, "room", "scene"),
             SourceConcept(5, "hall", "scene")]
        if self.rare:
            c.append(SourceConcept(6, "unicorn", "object"))
        return c

    def __len__(self):
        return self.n

    def fingerprint(self):
        return f"fake:{self.n}:{self.size}:{self.bad}:{self.rare}"

    def masks(self, index: int):
        """The object and part maps of sample ``index`` (ground truth for tests)."""
        s = self.size
        obj = np.full((s, s), 2, np.uint16)
        a = 2 + index % (s // 2)
        obj[a:a + s // 4, a:a + s // 4] = 1
        part = np.zeros((s, s), np.uint16)
        part[a:a + s // 8, a:a + s // 4] = 3
        if self.rare and index == 0:
            obj[0, 0] = 6
        return obj, part

    def sample(self, index: int) -> SourceSample:
        if not 0 <= index < self.n:
            raise IndexError(index)
        if self.bad and index % 7 == 3:
            raise BadSampleError(f"fake[{index}]: corrupt on purpose")
        obj, part = self.masks(index)
        colors = np.array([[0, 0, 0], [200, 30, 30], [40, 160, 50], [240, 220, 40], [0, 0, 0], [0, 0, 0],
                           [250, 250, 250]], np.uint8)
        image = colors[obj]
        image[part > 0] = colors[3]
        return SourceSample(id=f"fake-{index}", image=image,
                            pixel={"object": [obj], "part": [part]},
                            image_labels={"scene": [4 + index % 2]})
