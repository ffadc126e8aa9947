"""Per-example outcomes, stored compactly in result lines.

A result line keeps, for every attacked example (each (image, target) pair of a targeted run, in
the attacked order), how many of its ``repeats`` predictions the attack won; a model's clean-only
line keeps, for every clean test image, how many of its ``repeats`` predictions were correct.
These counts let the reporting side resample examples (bootstrap intervals) and pick per-example
worst cases without rerunning anything.

Encoding: ``"u8:"`` or ``"u16:"`` followed by the standard base64 of the counts as unsigned
little-endian integers of that width (``u8`` when every count is at most 255). 900 targeted pairs
take 1,200 characters; 10,000 clean images 13,336.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np

_WIDTHS = {"u8": np.dtype("<u1"), "u16": np.dtype("<u2")}


def encode_counts(counts: Sequence[int] | np.ndarray) -> str:
    """``counts`` (non-negative integers) as the compact string stored in a result line."""
    arr = np.asarray(counts)
    if arr.ndim != 1:
        raise ValueError(f"counts must be one-dimensional, got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError("counts must be non-negative integers")
    tag = "u8" if not arr.size or arr.max() <= 0xFF else "u16"
    if arr.size and arr.max() > 0xFFFF:
        raise ValueError(f"a count of {int(arr.max())} exceeds 65535")
    return f"{tag}:" + base64.b64encode(arr.astype(_WIDTHS[tag]).tobytes()).decode("ascii")


def decode_counts(text: str) -> np.ndarray:
    """The counts a string from :func:`encode_counts` holds, as an int64 array."""
    tag, sep, payload = str(text).partition(":")
    if not sep or tag not in _WIDTHS:
        raise ValueError(f"not an encoded count array: {str(text)[:20]!r}")
    raw = base64.b64decode(payload.encode("ascii"), validate=True)
    return np.frombuffer(raw, dtype=_WIDTHS[tag]).astype(np.int64)


def pair_index(n_images: int, n_classes: int, targeted: bool) -> tuple[np.ndarray, np.ndarray]:
    """For each attacked example, its image index and its target offset (1 … n_classes − 1 in a
    targeted run, in the order :func:`hrsbench.plugin.metrics.targeted_pairs` makes them; 0 when
    untargeted): an image's pairs are resampled together by the cluster bootstrap."""
    if not targeted:
        return np.arange(n_images), np.zeros(n_images, dtype=np.int64)
    reps = n_classes - 1
    return np.repeat(np.arange(n_images), reps), np.tile(np.arange(1, reps + 1), n_images)
