"""Where Mirage 2.5 splits an exposure into segment files, and what it names them.

Mirage keeps each file under ``FILE_SPLITTING_LIMIT`` pixel reads. Its dark_prep first splits
on frames (as the seed image does), then on groups with the number of integrations per file
forced to ``frames_per_group * (integrations per frame-based file)``, and finally moves one
integration out of a last segment that would hold a single one (unless the first holds one
too). Darks are split between integrations only. Seeds are matched to darks by the segment
number in the name (``_seg001``...), so a prepared dark must split exactly where Mirage does.
Plain arithmetic: no files.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FILE_SPLITTING_LIMIT", "find_splits", "integration_segments", "segment_suffixes"]

#: mirage.utils.constants.FILE_SPLITTING_LIMIT: pixel reads per file.
FILE_SPLITTING_LIMIT = 160.0 * 2048.0 * 2048


def find_splits(
    xdim: int,
    ydim: int,
    groups: int,
    integrations: int,
    frames_per_group: float | None = None,
    pixel_limit: float = FILE_SPLITTING_LIMIT,
    force_delta_int: int | None = None,
) -> tuple[bool, np.ndarray, np.ndarray]:
    """(split, first group of each piece + end, first integration of each piece + end), Mirage's rule.

    Within an integration when one integration exceeds the limit (then one integration per
    piece); otherwise between integrations, ``force_delta_int`` (or as many as fit) per piece.
    """
    pix_per_group = ydim * xdim
    pix_per_int = groups * pix_per_group
    observation = pix_per_int * integrations
    if pix_per_int > pixel_limit:
        delta_group = int(pixel_limit / pix_per_group)
        if frames_per_group is not None and delta_group % frames_per_group != 0:
            delta_group = (delta_group // frames_per_group) * frames_per_group
        group_list = np.append(np.arange(0, groups, delta_group).astype(int), groups)
        return True, group_list, np.arange(integrations + 1).astype(int)
    if observation > pixel_limit:
        delta_int = force_delta_int if force_delta_int else int(pixel_limit / pix_per_int)
        int_list = np.append(np.arange(0, integrations, delta_int).astype(int), integrations)
        return True, np.array([0, groups]), int_list
    return False, np.array([0, groups]), np.array([0, integrations])


def integration_segments(
    xdim: int,
    ydim: int,
    ngroup: int,
    nframe: int,
    nskip: int,
    nint: int,
    pixel_limit: float = FILE_SPLITTING_LIMIT,
) -> tuple[bool, list[tuple[int, int]]]:
    """Whether Mirage's dark_prep splits the exposure, and each segment's integrations [start, stop).

    Parameters
    ----------
    xdim, ydim : int
        Aperture size (pixels).
    ngroup, nframe, nskip, nint : int
        Groups per integration, frames averaged and skipped per group, integrations.
    """
    frames_per_integration = ngroup * (nframe + nskip)
    frames_per_group = frames_per_integration / ngroup
    _, _, int_ind = find_splits(
        xdim, ydim, frames_per_integration, nint, frames_per_group=frames_per_group, pixel_limit=pixel_limit
    )
    forced = int(frames_per_integration / ngroup) * int(int_ind[1] - int_ind[0])
    split, _, starts = find_splits(xdim, ydim, ngroup, nint, pixel_limit=pixel_limit, force_delta_int=forced)
    starts = np.array(starts)
    if len(starts) > 2:
        delta = starts[1:] - starts[:-1]
        if delta[-1] == 1 and delta[0] != 1:
            starts[-2] -= 1
    return bool(split), [(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:], strict=True)]


def segment_suffixes(split: bool, nsegments: int) -> list[str]:
    """The name parts Mirage puts before ``_linear_dark_prep_object.fits`` (``_seg001``... or '')."""
    if not split:
        return [""] * nsegments
    return [f"_seg{k + 1:03d}" for k in range(nsegments)]
