"""Mirage 2.5's rules for the reference data of one exposure, as plain facts.

Each table cites where Mirage 2.5.0 keeps it (paths inside the ``mirage-2.5.0`` wheel), so a
test can compare it with Mirage's own code.

Examples
--------
>>> frames_per_group("nircam", "DEEP8")
20
>>> crds_detector("NRCB5_FULL"), crds_detector("FGS2_FULL"), crds_detector("NIS_CEN")
('NRCBLONG', 'GUIDER2', 'NIS')
"""

from __future__ import annotations

#: yaml ``Inst:instrument`` (any case) -> our instrument name.
INSTRUMENTS = {"nircam": "nircam", "niriss": "niriss", "fgs": "fgs"}

#: Readout patterns: name -> (nframe, nskip) (``mirage/config/*read*pattern*``).
READ_PATTERNS = {
    "nircam": {
        "RAPID": (1, 0),
        "BRIGHT1": (1, 1),
        "BRIGHT2": (2, 0),
        "SHALLOW2": (2, 3),
        "SHALLOW4": (4, 1),
        "MEDIUM2": (2, 8),
        "MEDIUM8": (8, 2),
        "DEEP2": (2, 18),
        "DEEP8": (8, 12),
    },
    "niriss": {"NISRAPID": (1, 0), "NIS": (4, 0)},
    "fgs": {"FGSRAPID": (1, 0), "FGS": (4, 0)},
}

#: The pattern of every frame read, from which dark_prep can average any other pattern.
RAPID = {"nircam": "RAPID", "niriss": "NISRAPID", "fgs": "FGSRAPID"}

#: Frames in a collection dark, assumed until the file is on disk (MIRAGE_USAGE 1.4: 108).
COLLECTION_DARK_FRAMES = 108

#: Cosmic-ray libraries Mirage accepts (``obs_generator.py:773-784``), upper case only: the rate
#: lookup is a case-sensitive substring test, so ``sunmin`` finds files but adds no cosmic rays.
COSMIC_RAY_LIBRARIES = ("SUNMAX", "SUNMIN", "FLARES")
COSMIC_RAY_FILES = 10  # CRs_MCD1.7_<LIB>_00..09_<suffix>.fits

#: yaml ``Reffiles`` key -> CRDS reftype (``constants.CRDS_FILE_TYPES``), without
#: ``transmission`` (a grism-configuration file, not a CRDS lookup).
CRDS_KEYS = {
    "badpixmask": "mask",
    "superbias": "superbias",
    "linearity": "linearity",
    "saturation": "saturation",
    "gain": "gain",
    "pixelflat": "flat",
    "astrometric": "distortion",
    "ipc": "ipc",
    "photom": "photom",
    "pixelAreaMap": "area",
}

#: Imaging EXP_TYPE that Mirage always queries CRDS with (``constants.EXPTYPES[...]['imaging']``).
IMAGING_EXP_TYPE = {"nircam": "NRC_IMAGE", "niriss": "NIS_IMAGE", "fgs": "FGS_IMAGE"}

#: Modes the yaml generator writes, per instrument (``constants.EXPTYPES`` keys, plus moving target).
MODES = {
    "nircam": ("imaging", "ts_imaging", "wfss", "ts_grism", "moving_target"),
    "niriss": ("imaging", "ami", "pom", "wfss", "soss", "moving_target"),
    "fgs": ("imaging", "moving_target"),
}

#: What a mode needs beyond the collection and CRDS (reported, not prepared).
OTHER_NEEDS = {
    ("nircam", "wfss"): ["grism configuration files (GRISM_NIRCAM repository)", "source spectra or SED catalog"],
    ("nircam", "ts_grism"): ["grism configuration files (GRISM_NIRCAM repository)", "grism TSO source spectrum"],
    ("niriss", "wfss"): [
        "grism configuration files and POM transmission (GRISM_NIRISS repository)",
        "source spectra or SED catalog",
    ],
    ("niriss", "soss"): ["source spectrum (and a transit model for time series)"],
    ("niriss", "pom"): ["POM transmission file (GRISM_NIRISS repository)"],
}

#: NIRISS filters in the pupil wheel, NIRCam filters in the pupil wheel (``constants.py:46, 57``).
NIRISS_PUPIL_WHEEL_FILTERS = ("F090W", "F115W", "F158M", "F140M", "F150W", "F200W")
NIRCAM_PUPIL_WHEEL_FILTERS = ("F162M", "F164N", "F323N", "F405N", "F466N", "F470N")

#: PSF normalisation window and per-element throughput factors (``constants.py:140-149``).
PSF_NORM_MIN, PSF_NORM_MAX, PSF_RENORM_MAX = 0.8, 1.0, 1.1
NIRISS_CLEARP_FACTOR, NIRISS_NRM_FACTOR, NIRCAM_WLP12_FACTOR = 0.84, 0.17, 0.5

#: FGS dark globs for nint > 1 (``constants.FGS1/2_DARK_SEARCH_STRING``).
FGS_DARK_GLOB = {"GUIDER1": "*_497_*fits", "GUIDER2": "*_498_*fits"}


def aperture_prefix(array_name: str) -> str:
    """The detector part of an aperture name (``NRCA5_FULL`` -> ``NRCA5``)."""
    return array_name.split("_")[0].upper()


def crds_detector(array_name: str) -> str:
    """CRDS ``DETECTOR`` as Mirage derives it (``crds_tools.dict_from_yaml``)."""
    det = aperture_prefix(array_name)
    if "5" in det:
        det = det.replace("5", "LONG")
    if "FGS" in det:
        det = f"GUIDER{det[-1]}"
    return det


def collection_detector(instrument: str, array_name: str) -> str:
    """The collection's detector name (``A1``..``B5``, ``NIS``, ``GUIDER1``/``GUIDER2``).

    >>> collection_detector("nircam", "NRCB5_SUB160")
    'B5'
    """
    det = aperture_prefix(array_name)
    if instrument == "nircam":
        return det[3:]
    if instrument == "fgs":
        return det.replace("FGS", "GUIDER")
    return det


def frames_per_group(instrument: str, readpatt: str) -> int:
    nframe, nskip = READ_PATTERNS[instrument][readpatt]
    return nframe + nskip


def crds_query(instrument: str, readpatt: str, array_name: str, filter_: str, pupil: str, date: str, time: str) -> dict:
    """The CRDS selection parameters Mirage 2.5 builds from a yaml (``crds_tools.dict_from_yaml``),
    with the observation date and time given (Mirage uses today and now)."""
    inst = instrument.upper()
    query = {"INSTRUME": inst, "READPATT": readpatt.upper(), "SUBARRAY": "FULL", "DATE-OBS": date, "TIME-OBS": time}
    query["DETECTOR"] = crds_detector(array_name)
    if inst == "NIRCAM":
        query["CHANNEL"] = "LONG" if query["DETECTOR"] in ("NRCALONG", "NRCBLONG") else "SHORT"
    query["EXP_TYPE"] = IMAGING_EXP_TYPE[instrument]
    query["FILTER"] = filter_
    query["PUPIL"] = pupil
    return query
