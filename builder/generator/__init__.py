"""Generator dissection: seeded samples, cached segmentations, dissection, ablation, insertion.

``run_gan(model, layers, segmenter, samples, out, GanOptions(...))`` is the whole experiment
(``unitdissect gan``); the pieces are ``load_generator`` (specs and latent samplers),
``SampleProbe`` (the segmented samples, a probe set for the dissection engine),
``ablation_sweep`` / ``insertion_sweep`` (batched interventions) and the checkpoint adapters
``progan:`` / ``stylegan2:``. See docs/generator.md.
"""

from .interventions import (AblationResult, InsertionResult, LayerSplit, ablation_sweep,
                            insertion_sweep, ratio_interval)
from .probe import SampleProbe, SampleStore, concept_counts
from .runner import GanOptions, run_gan
from .sampler import Generator, LatentSpec, load_generator, sample_latents
from .segment import Labeller, resolve_segmenter

__all__ = [
    "AblationResult",
    "GanOptions",
    "Generator",
    "InsertionResult",
    "Labeller",
    "LatentSpec",
    "LayerSplit",
    "SampleProbe",
    "SampleStore",
    "ablation_sweep",
    "concept_counts",
    "insertion_sweep",
    "load_generator",
    "ratio_interval",
    "resolve_segmenter",
    "run_gan",
    "sample_latents",
]
