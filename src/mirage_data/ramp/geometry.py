"""Frame geometry of a near-infrared readout: shape, reference-pixel borders, amplifiers.

The pipeline's refpix step works in detector orientation (`to_detector`): the amplifiers are
stripes of detector columns, read along the rows; reference pixels form a border (4 pixels on
a full frame) at the bottom, top, left and right. A subarray holds only the borders it
overlaps. `FrameGeometry` says which, so that no step assumes a 2048 x 2048 full frame.

>>> g = FrameGeometry.full_frame()
>>> g.shape, g.amplifier_columns(1)
((2048, 2048), (512, 1024))
>>> FrameGeometry.from_subarray(xstart=1, ystart=1, xsize=64, ysize=64, noutputs=1, fastaxis=1, slowaxis=2).borders
(4, 0, 4, 0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["REFPIX_WIDTH", "FULL_DETECTOR", "FrameGeometry", "to_detector"]

#: Width of the reference-pixel border of a NIR detector (pixels).
REFPIX_WIDTH = 4
#: Size of a full NIR detector readout (pixels, square).
FULL_DETECTOR = 2048


def to_detector(image: np.ndarray, fastaxis: int, slowaxis: int) -> np.ndarray:
    """View of a DMS-oriented image in detector orientation (``FASTAXIS``/``SLOWAXIS``).

    As ``jwst.lib.reffile_utils.science_detector_frame_transform``; a view, so writing into
    it writes into *image*. Detector orientation puts the amplifiers along the columns and
    reads each row left to right.
    """
    if abs(fastaxis) == 1:
        return image[..., :: int(np.sign(slowaxis)), :: int(np.sign(fastaxis))]
    return np.swapaxes(image[..., :: int(np.sign(fastaxis)), :: int(np.sign(slowaxis))], -2, -1)


@dataclass(frozen=True)
class FrameGeometry:
    """Where the reference pixels and amplifiers of a frame are.

    Attributes
    ----------
    shape : (int, int)
        Frame shape in DMS orientation (rows, columns).
    fastaxis, slowaxis : int
        ``FASTAXIS`` and ``SLOWAXIS`` of the readout.
    n_amps : int
        Amplifiers (outputs) sharing the detector columns equally.
    borders : (int, int, int, int)
        Reference-pixel rows at the bottom and top and columns at the left and right, in
        detector orientation (0 where the frame does not reach that border).
    """

    shape: tuple[int, int]
    fastaxis: int = 1
    slowaxis: int = 2
    n_amps: int = 4
    borders: tuple[int, int, int, int] = (REFPIX_WIDTH,) * 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        if {abs(self.fastaxis), abs(self.slowaxis)} != {1, 2}:
            raise ValueError(f"FASTAXIS = {self.fastaxis}, SLOWAXIS = {self.slowaxis}: one must be +-1, the other +-2")
        cols = self.detector_shape[1]
        if self.n_amps < 1 or cols % self.n_amps:
            raise ValueError(f"{cols} detector columns cannot be shared by {self.n_amps} amplifiers")

    @classmethod
    def full_frame(cls, fastaxis: int = 1, slowaxis: int = 2, size: int = FULL_DETECTOR) -> FrameGeometry:
        """A full-frame readout: all four borders, four amplifiers."""
        return cls((size, size), fastaxis, slowaxis)

    @classmethod
    def from_subarray(
        cls,
        *,
        xstart: int,
        ystart: int,
        xsize: int,
        ysize: int,
        noutputs: int,
        fastaxis: int,
        slowaxis: int,
        detector_size: int = FULL_DETECTOR,
    ) -> FrameGeometry:
        """Geometry of a readout from its subarray keywords (``SUBSTRT1/2``, ``SUBSIZE1/2``,
        ``NOUTPUTS``; 1-based starts, DMS orientation)."""

        def overlap(start: int, size: int) -> tuple[int, int]:
            lo = max(0, min(REFPIX_WIDTH, REFPIX_WIDTH - (start - 1)))
            hi_start = detector_size - REFPIX_WIDTH
            hi = max(0, min(REFPIX_WIDTH, start - 1 + size - hi_start))
            return min(lo, size), min(hi, size)

        dms_left, dms_right = overlap(xstart, xsize)
        dms_bottom, dms_top = overlap(ystart, ysize)
        # detector rows run along the slow axis, columns along the fast axis (reversed if negative)
        cols = (dms_left, dms_right) if abs(fastaxis) == 1 else (dms_bottom, dms_top)
        rows = (dms_bottom, dms_top) if abs(fastaxis) == 1 else (dms_left, dms_right)
        if fastaxis < 0:
            cols = cols[::-1]
        if slowaxis < 0:
            rows = rows[::-1]
        return cls((ysize, xsize), fastaxis, slowaxis, noutputs, (rows[0], rows[1], cols[0], cols[1]))

    @property
    def transposed(self) -> bool:
        """True when detector rows are DMS columns (``abs(FASTAXIS) == 2``)."""
        return abs(self.fastaxis) == 2

    @property
    def detector_shape(self) -> tuple[int, int]:
        """(rows, columns) in detector orientation."""
        return self.shape[::-1] if self.transposed else self.shape

    @property
    def amp_width(self) -> int:
        """Detector columns per amplifier."""
        return self.detector_shape[1] // self.n_amps

    def amplifier_columns(self, amp: int) -> tuple[int, int]:
        """First and past-the-last detector column of amplifier *amp* (0-based)."""
        return amp * self.amp_width, (amp + 1) * self.amp_width

    def to_detector(self, image: np.ndarray) -> np.ndarray:
        """View of a DMS-oriented image of this geometry in detector orientation."""
        return to_detector(image, self.fastaxis, self.slowaxis)
