"""The JWST pipeline's ramp steps as plain numpy functions, one step per module (as stcal):
dq_init, saturation, superbias, refpix, linearity, and the chain that runs them
(with dqflags, the pipeline's flag values, and geometry, where a frame's reference pixels and
amplifiers are).

Arrays in, arrays out: imports numpy only; no files, no FITS, no thread pools of its own (the
chain runs its tiles on an executor the caller may pass).

The steps reproduce, number for number, what jwst 3.0 (stcal 1.20) does to NIRCam, NIRISS and
FGS ramps (refpix: the NIR "median" algorithm). Signal values are DN, float32 as in the
pipeline's ``RampModel``; PIXELDQ is uint32 and GROUPDQ uint8 with the pipeline's flag values.
"""

from .chain import (
    CalibrationBuilder,
    PreparedCalibration,
    RampLinearizer,
    RampResult,
    linearize_ramp,
    prepare_calibration,
)
from .dq_init import initialize_dq
from .dqflags import DQ, GROUP_DQ
from .geometry import FrameGeometry, to_detector
from .linearity import apply_linearity, prepare_linearity
from .refpix import ReferenceStrips, RefpixCorrection, compute_refpix_correction, correct_reference_pixels
from .saturation import (
    ATOD_LIMIT,
    SaturationReference,
    SaturationState,
    finish_saturation,
    flag_saturation,
    flag_saturation_group,
    grow_flags,
    prepare_saturation,
    read_pattern,
)
from .superbias import prepare_superbias, subtract_superbias

__all__ = [
    "DQ",
    "GROUP_DQ",
    "ATOD_LIMIT",
    "FrameGeometry",
    "to_detector",
    "initialize_dq",
    "read_pattern",
    "prepare_saturation",
    "grow_flags",
    "SaturationReference",
    "SaturationState",
    "flag_saturation_group",
    "finish_saturation",
    "flag_saturation",
    "prepare_superbias",
    "subtract_superbias",
    "RefpixCorrection",
    "ReferenceStrips",
    "compute_refpix_correction",
    "correct_reference_pixels",
    "prepare_linearity",
    "apply_linearity",
    "PreparedCalibration",
    "CalibrationBuilder",
    "prepare_calibration",
    "RampLinearizer",
    "RampResult",
    "linearize_ramp",
]
