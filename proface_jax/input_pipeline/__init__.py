"""Face images for training and evaluation, in the style of Flax's examples/imagenet input
pipeline: plain functions and small classes, no hidden global state. Everything that decides
*which* image comes *when* is a pure function of (spec, split, seed, step).

`sources`: ``folder:PATH`` and ``tfds:NAME`` sources, their hash-based or native splits, face
crops (`open_source`, `test_sample`). `batches`: the resumable batch order and the threaded
decoder (`make_iterator`, `cache_in_memory`). TFDS is imported only when a ``tfds:`` source is
opened (the `train` extra installs it).
"""
from pathlib import Path

from proface_jax.input_pipeline.batches import (
    BatchIterator, batch_indices, cache_in_memory, epoch_order, make_iterator, steps_per_epoch,
)
from proface_jax.input_pipeline.sources import (
    CELEBA_CROP, CENTER_SQUARE, DEFAULT_FRACTIONS, IMAGE_EXTENSIONS, LFW_CROP, SPLITS, ArraySource, Face, FaceCrop,
    FolderSource, Source, Subset, TfdsSource, list_images, open_source, preprocess, split_bucket, split_of,
    test_sample,
)


def resolve_data(spec: str) -> str:
    """``folder:PATH`` with PATH made absolute (runs and reports record where the faces were); other specs as given."""
    if spec.startswith("folder:"):
        return "folder:" + str(Path(spec[len("folder:"):]).expanduser().resolve())
    return spec


__all__ = [
    "ArraySource", "BatchIterator", "CELEBA_CROP", "CENTER_SQUARE", "DEFAULT_FRACTIONS", "Face", "FaceCrop",
    "FolderSource", "IMAGE_EXTENSIONS", "LFW_CROP", "SPLITS", "Source", "Subset", "TfdsSource", "batch_indices",
    "cache_in_memory", "epoch_order", "list_images", "make_iterator", "open_source", "preprocess", "resolve_data",
    "split_bucket", "split_of", "steps_per_epoch", "test_sample",
]
