"""Mirage input yaml files and a small collection for the exposure tests.

`yaml_text` writes a yaml file as Mirage 2.5's ``yaml_generator.write_yaml`` does (same
sections, keys, literal ``None`` values and trailing comments), for any instrument, mode,
aperture, filter, pupil, readout pattern and nint. `make_exposure_collection` writes a small
collection (real catalog paths, own small content: darks with few frames, PSF libraries for a
few filters, all ten cosmic-ray files of every library for a few detectors) and its catalog.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from astropy.io import fits

from mirage_data.collection.catalog import Catalog, load_catalog

DARK_FRAMES = 10  # frames in the small collection darks

#: (instrument, detector) -> [(filter, pupil)] with PSF libraries in the small collection.
PSF_FILTERS = {
    ("nircam", "A1"): [("F200W", "CLEAR"), ("F150W", "CLEAR")],
    ("nircam", "A2"): [("F200W", "CLEAR")],
    ("nircam", "A5"): [("F444W", "CLEAR")],
    ("niriss", "NIS"): [("CLEAR", "F150W"), ("F277W", "CLEARP")],
    ("fgs", "GUIDER1"): [("NA", "NA")],
    ("fgs", "GUIDER2"): [("NA", "NA")],
}
CR_SUFFIXES = {
    "nircam": ["IPC_NIRCam_A1", "IPC_NIRCam_A2", "IPC_NIRCam_A5"],
    "niriss": ["IPC_NIRISS_NIS"],
    "fgs": ["IPC_FGS_GUIDER1", "IPC_FGS_GUIDER2"],
}
#: Linearized darks per detector in the small collection (raw: one, for A1).
DARKS = {
    ("nircam", "A1"): 3,
    ("nircam", "A2"): 1,
    ("nircam", "A5"): 1,
    ("niriss", "NIS"): 2,
    ("fgs", "GUIDER1"): 1,
    ("fgs", "GUIDER2"): 2,
}

APERTURE = {"nircam": "NRCA1_FULL", "niriss": "NIS_CEN", "fgs": "FGS1_FULL"}
READPATT = {"nircam": "RAPID", "niriss": "NISRAPID", "fgs": "FGSRAPID"}
LABEL = {"nircam": "NIRCam", "niriss": "NIRISS", "fgs": "FGS"}


def yaml_text(
    instrument: str = "nircam",
    *,
    mirage_data: str = "/somewhere/else/mirage_data",
    mode: str = "imaging",
    aperture: str | None = None,
    readpatt: str | None = None,
    ngroup: int = 3,
    nint: int = 1,
    filter: str | None = None,  # noqa: A002
    pupil: str | None = None,
    dark: str = "None",
    linearized_darkfile: str | None = None,
    cr_library: str = "SUNMAX",
    cr_path: str | None = None,
    psfpath: str | None = None,
    add_psf_wings: bool = True,
    reffiles: dict | None = None,
    output_file: str = "jw01234001001_01101_00001_nrca1_uncal.fits",
) -> str:
    """A yaml file as Mirage's generator writes it (``mirage_data`` is the generating machine's)."""
    aperture = aperture or APERTURE[instrument]
    readpatt = readpatt or READPATT[instrument]
    prefix = aperture.split("_")[0]
    if instrument == "nircam":
        det = prefix[3:]
        suffix = f"IPC_NIRCam_{det}"
        default_filter = ("F444W", "CLEAR") if det.endswith("5") else ("F200W", "CLEAR")
    elif instrument == "niriss":
        det, suffix, default_filter = "NIS", "IPC_NIRISS_NIS", ("CLEAR", "F150W")
    else:
        det = prefix.replace("FGS", "GUIDER")
        suffix, default_filter = f"IPC_FGS_{det}", ("N/A", "N/A")
    filter = filter or default_filter[0]
    pupil = pupil or default_filter[1]
    if linearized_darkfile is None:
        linearized_darkfile = _collection_dark(instrument, det, mirage_data)
    ref = {
        "badpixmask": "crds",
        "superbias": "crds",
        "linearity": "crds",
        "saturation": "crds",
        "gain": "crds",
        "pixelflat": "crds",
        "astrometric": "crds",
        "photom": "crds",
        "ipc": "crds",
        "transmission": "crds",
    }
    ref.update(reffiles or {})
    psfpath = psfpath or f"{mirage_data}/{instrument}/gridded_psf_library"
    cr_path = cr_path or f"{mirage_data}/{instrument}/cosmic_ray_library"
    config = f"/opt/mirage/mirage/config/{instrument}"
    return f"""Inst:
  instrument: {LABEL[instrument]}          # Instrument name
  mode: {mode}                # Observation mode (e.g. imaging, WFSS)
  use_JWST_pipeline: False   # Use pipeline in data transformations

Readout:
  readpatt: {readpatt}        # Readout pattern (RAPID, BRIGHT2, etc) overrides nframe, nskip
  ngroup: {ngroup}              # Number of groups in integration
  nint: {nint}          # Number of integrations per exposure
  namp: 4          # Number of amplifiers used to read out detector
  resets_bet_ints: 1 #Number of detector resets between integrations
  array_name: {aperture}    # Name of array (FULL, SUB160, SUB64P, etc)
  intermediate_aperture: N/A   # Name of intermediate aperture used in NIRCam Grism time series obs.
  PPS_aperture: {aperture}  # Original aperture value supplied by PPS.
  filter: {filter}       # Filter of simulated data (F090W, F322W2, etc)
  pupil: {pupil}        # Pupil element for simulated data (CLEAR, GRISMC, etc)

Reffiles:                                 # Set to None or leave blank if you wish to skip that step
  dark: {dark}   # Dark current integration used as the base
  linearized_darkfile: {linearized_darkfile}   # Linearized dark ramp to use as input. Supercedes dark above
  badpixmask: {ref["badpixmask"]}   # If linearized dark is used, populate output DQ extensions using this file
  superbias: {ref["superbias"]}     # Superbias file. Set to None or leave blank if not using
  linearity: {ref["linearity"]}    # linearity correction coefficients
  saturation: {ref["saturation"]}    # well depth reference files
  gain: {ref["gain"]} # Gain map
  pixelflat: {ref["pixelflat"]}    # Flat field file to use for un-flattening output
  illumflat: None                               # Illumination flat field file
  astrometric: {ref["astrometric"]}  # Astrometric distortion file (asdf)
  photom: {ref["photom"]}   # cal pipeline photom reference file
  ipc: {ref["ipc"]} # File containing IPC kernel to apply
  invertIPC: True      # Invert the IPC kernel before the convolution. True or False.
  occult: None                                    # Occulting spots correction image
  transmission: {ref["transmission"]}      # Transmission image containing fractional throughput map.
  subarray_defs: {config}_subarrays.list # File that contains a list of all possible subarray names and coordinates
  readpattdefs: {config}_readout_pattern.txt  # File that contains a list of all possible readout pattern names
  crosstalk: {config}_xtalk.txt   # File containing crosstalk coefficients
  filtpupilcombo: {config}_filter_pupil.list   # File that lists the filter wheel element / pupil wheel element
  filter_wheel_positions: {config}_wheel_positions.txt  # File containing resolver wheel positions
  flux_cal: {config}_zeropoints.list # File that lists flux conversion factor and pivot wavelength for each filter.
  filter_throughput: placeholder.txt #File containing filter throughput curve

nonlin:
  limit: 60000.0                           # Upper singal limit to which nonlinearity is applied (ADU)
  accuracy: 0.000001                        # Non-linearity accuracy threshold
  maxiter: 10                              # Maximum number of iterations to use when applying non-linearity
  robberto:  False                         # Use Massimo Robberto type non-linearity coefficients

cosmicRay:
  path: {cr_path}               # Path to CR library
  library: {cr_library}    # Type of cosmic rayenvironment (SUNMAX, SUNMIN, FLARE)
  scale: 1.0     # Cosmic ray scaling factor
  suffix: {suffix}    # Suffix of library file names
  seed: 2956411739                 # Seed for random number generator

simSignals:
  pointsource: None   #File containing a list of point sources to add (x, y locations and magnitudes)
  gridded_psf_library_row_padding: 4  # Number of outer rows and columns to avoid when evaluating library.
  psf_wing_threshold_file: {config}_psf_wing_rate_thresholds.txt   # File defining PSF sizes versus magnitude
  add_psf_wings: {add_psf_wings}  # Whether or not to place the core of the psf from the gridded library into an image.
  psfpath: {psfpath}   #Path to PSF library
  psfwfe: predicted   #PSF WFE value (predicted or requirements)
  psfwfegroup: 0      #WFE realization group (0 to 4)
  galaxyListFile: None    #File containing a list of positions/ellipticities/magnitudes of galaxies to simulate
  extended: None          #Extended emission count rate image file name
  extendedscale: 1.0                          #Scaling factor for extended emission image
  extendedCenter: 1024,1024                   #x, y pixel location at which to place the extended image
  PSFConvolveExtended: True #Convolve the extended image with the PSF before adding to the output image
  movingTargetList: None          #Name of file containing a list of point source moving targets
  movingTargetSersic: None  #ascii file containing a list of 2D sersic profiles
  movingTargetExtended: None      #ascii file containing a list of stamp images to add as moving targets
  movingTargetToTrack: None #File containing a single moving target which JWST will track
  tso_imaging_catalog: None #Catalog of (generally one) source for Imaging Time Series observation
  tso_grism_catalog: None #Catalog of (generally one) source for Grism Time Series observation
  zodiacal:  None                          #Zodiacal light count rate image file
  zodiscale:  1.0                            #Zodi scaling factor
  scattered:  None                          #Scattered light count rate image file
  scatteredscale: 1.0                        #Scattered light scaling factor
  bkgdrate: low                         #Constant background count rate
  poissonseed: 2012872553                  #Random number generator seed for Poisson simulation)
  photonyield: True                         #Apply photon yield in simulation
  pymethod: True                            #Use double Poisson simulation for photon yield
  expand_catalog_for_segments: False                     # Expand catalog for 18 segments and use distinct PSFs
  use_dateobs_for_background: False          # Use date_obs below to deternine background.
  signal_low_limit_for_segmap: 0.0         # Lower signal limit to include pix in segmentation map.
  signal_low_limit_for_segmap_units: ADU/sec  # Units of signal_low_limit_for_segmap.
  add_ghosts: False  # Add optical ghosts associated with astronomical sources
  PSFConvolveGhosts: True  # Convolve ghost stamp images with instrument PSF before adding

Telescope:
  ra: 53.1                      # RA of simulated pointing
  dec: -27.8                    # Dec of simulated pointing
  rotation: 0.0                    # y axis rotation (degrees E of N)
  tracking: sidereal   #Telescope tracking. Can be sidereal or non-sidereal

newRamp:
  dq_configfile: config
  sat_configfile: config
  superbias_configfile: config
  refpix_configfile: config
  linear_configfile: config

Output:
  file: {output_file}   # Output filename
  directory: /data/sims   # Directory in which to place output files
  datatype: linear,raw # Type of data to save. 'linear' for linearized ramp. 'raw' for raw ramp. 'linear, raw' for both
  format: DMS          # Output file format Options: DMS, SSR(not yet implemented)
  save_intermediates: False   # Save intermediate products separately (point source image, etc)
  grism_source_image: False   # grism
  unsigned: True   # Output unsigned integers? (0-65535 if true. -32768 to 32768 if false)
  dmsOrient: True    # Output in DMS orientation (vs. fitswriter orientation).
  program_number: 01234    # Program Number
  title: mirage-data test   # Program title
  PI_Name: Tester  # Proposal PI Name
  proposal_category: GO  # Proposal category
  science_category: Galaxies  # Science category
  target_name: FIELD  # Name of target
  target_ra: 53.1  # RA of the target, from APT file.
  target_dec: -27.8  # Dec of the target, from APT file.
  observation_number: '001'    # Observation Number
  observation_label: Obs1    # User-generated observation Label
  visit_number: '001'    # Visit Number
  visit_group: '01'    # Visit Group
  visit_id: '01234001001'    # Visit ID
  sequence_id: '1'    # Sequence ID
  activity_id: '01'    # Activity ID. Increment with each exposure.
  exposure_number: '00001'    # Exposure Number
  obs_id: 'V01234001001P0000000001101'   # Observation ID number
  date_obs: '2026-10-01'  # Date of observation
  time_obs: '12:00:00.000'  # Time of observation
  obs_template: 'NIRCam Imaging'  # Observation template
  primary_dither_type: NONE  # Primary dither pattern name
  total_primary_dither_positions: 1  # Total number of primary dither positions
  primary_dither_position: 1  # Primary dither position number
  subpix_dither_type: None  # Subpixel dither pattern name
  total_subpix_dither_positions: 1  # Total number of subpixel dither positions
  subpix_dither_position: 1  # Subpixel dither position number
  xoffset: 0.0  # Dither pointing offset in x (arcsec)
  yoffset: 0.0  # Dither pointing offset in y (arcsec)
"""


def _collection_dark(instrument: str, detector: str, mirage_data: str) -> str:
    """The first linearized collection dark of the detector (as the generator names it)."""
    found = dark_entries().get((instrument, detector))
    if not found:
        found = sorted(
            (
                e
                for e in _catalog()
                if e.instrument == instrument and e.dark_kind == "linearized" and e.detectors == (detector,)
            ),
            key=lambda e: e.relative_path,
        )
    return f"{mirage_data}/{found[0].install_path}"


@functools.lru_cache(maxsize=1)
def _catalog() -> Catalog:
    return load_catalog()


def dark_entries(kind: str = "linearized") -> dict:
    """(instrument, detector) -> catalog entries of the small collection's darks (sorted)."""
    catalog = _catalog()
    out = {}
    for (inst, det), count in DARKS.items():
        found = sorted(
            (e for e in catalog if e.instrument == inst and e.dark_kind == kind and e.detectors == (det,)),
            key=lambda e: e.relative_path,
        )
        out[(inst, det)] = found[: count if kind == "linearized" else 1]
    return out


def write_yaml(folder: Path, name: str, instrument: str = "nircam", **kw) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml_text(instrument, **kw))
    return path


# ----------------------------------------------------------------------------- collection files


def _fits(hdus) -> bytes:
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def _crds_detector(instrument: str, det: str) -> str:
    if instrument == "nircam":
        return f"NRC{det[0]}LONG" if det.endswith("5") else f"NRC{det}"
    return det


def dark_bytes(instrument: str, det: str, kind: str, frames: int = DARK_FRAMES, detector: str | None = None) -> bytes:
    header = fits.Header()
    header["INSTRUME"] = instrument.upper()
    header["DETECTOR"] = detector or _crds_detector(instrument, det)
    header["READPATT"] = READPATT[instrument]
    header["NGROUPS"], header["NINTS"] = frames, 1
    if kind == "raw":
        return _fits(
            [fits.PrimaryHDU(header=header), fits.ImageHDU(np.zeros((1, frames, 4, 4), np.uint16), name="SCI")]
        )
    cubes = [fits.ImageHDU(np.zeros((1, frames, 4, 4), np.float32), name=n) for n in ("SCI", "SBANDREFPIX")]
    return _fits([fits.PrimaryHDU(header=header), *cubes])


def psf_cards(instrument: str, det_name: str, filt: str, pupil: str) -> list:
    return [
        ("INSTRUME", LABEL[instrument].upper()),
        ("DETECTOR", det_name.upper()),
        ("FILTER", filt),
        ("PUPIL", pupil),
        ("OPD_FILE", f"OPD_RevW_ote_for_{LABEL[instrument]}_predicted.fits.gz"),
        ("OPDSLICE", 0),
    ]


def psf_core_bytes(cards: list, oversamp: int = 2, npsf: int = 4, scale: float = 1.0, det_yx: bool = True) -> bytes:
    size = 5 * oversamp
    y, x = np.indices((size, size))
    psf = np.exp(-((y - (size - 1) / 2) ** 2 + (x - (size - 1) / 2) ** 2) / 4.0)
    psf = psf / psf.sum() * oversamp**2 * scale
    cube = np.repeat(psf[None], npsf, axis=0).astype(np.float32)
    header = fits.Header(cards)
    header["OVERSAMP"] = oversamp
    header["NUM_PSFS"] = npsf
    if det_yx:
        for i in range(npsf):
            header[f"DET_YX{i}"] = f"({(i // 2) * 2047.0:.1f}, {(i % 2) * 2047.0:.1f})"
    return _fits([fits.PrimaryHDU(cube, header=header)])


def psf_wings_bytes(cards: list, size: int = 11) -> bytes:
    image = np.full((size, size), 1.0 / size**2, np.float32)
    header = fits.Header(cards + [("OVERSAMP", 1), ("DET_YX0", "(1023.0, 1023.0)")])
    # the primary holds the image too (as the installer's check of library tarball members wants)
    return _fits(
        [fits.PrimaryHDU(image, header=header), fits.ImageHDU(image, header=fits.Header(cards), name="DET_DIST")]
    )


def psf_names(instrument: str, det: str, filt: str, pupil: str) -> tuple[str, str, str]:
    """(core name, wings name, DETECTOR) of a library as Mirage looks them up."""
    det_name = {"nircam": f"nrc{det.lower()}", "niriss": "nis", "fgs": det.lower().replace("guider", "fgs")}[instrument]
    if instrument == "fgs":
        core = f"fgs_{det_name}_fovp5_samp2_npsf4_predicted_realization0.fits"
    elif instrument == "niriss":
        name_f, name_p = (pupil, "clear") if filt.upper() == "CLEAR" else (filt, pupil)
        core = f"niriss_nis_{name_f.lower()}_{name_p.lower()}_fovp5_samp2_npsf4_predicted_realization0.fits"
    else:
        core = f"nircam_{det_name}_{filt.lower()}_{pupil.lower()}_fovp5_samp2_npsf4_predicted_realization0.fits"
    wings = f"{instrument}_{det_name}_{filt.lower()}_{pupil.lower()}_fovp11_samp1_predicted_realization0.fits"
    return core, wings, det_name.upper()


def _header_filter(instrument: str, filt: str, pupil: str) -> tuple[str, str]:
    """FILTER/PUPIL as WebbPSF writes them (NIRISS pupil-wheel filters as FILTER with CLEARP)."""
    if instrument == "niriss" and filt.upper() == "CLEAR":
        return pupil, "CLEARP"
    return filt, pupil


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def collection_members(entry) -> bytes:
    inst = entry.instrument
    if entry.is_dark:
        det = entry.detectors[0]
        return gzip.compress(dark_bytes(inst, det, entry.dark_kind), mtime=0)
    members = []
    if entry.group == "cosmic_ray_library":
        for lib in ("SUNMAX", "SUNMIN", "FLARES"):
            for n in range(10):
                for suffix in CR_SUFFIXES[inst]:
                    data = _fits([fits.PrimaryHDU(), fits.ImageHDU(np.ones((2, 21, 21), np.float32))])
                    members.append(
                        (f"mirage_data/{inst}/cosmic_ray_library/CRs_MCD1.7_{lib}_{n:02d}_{suffix}.fits", data)
                    )
    elif entry.group in ("psf_library", "psf_wings"):
        for (pinst, det), pairs in PSF_FILTERS.items():
            if pinst != inst:
                continue
            if entry.group == "psf_library" and det not in entry.detectors:
                continue
            for filt, pupil in pairs:
                core, wings, det_name = psf_names(inst, det, filt, pupil)
                cards = psf_cards(inst, det_name, *_header_filter(inst, filt, pupil))
                folder = f"mirage_data/{inst}/gridded_psf_library"
                if entry.group == "psf_library":
                    members.append((f"{folder}/{core}", psf_core_bytes(cards)))
                if entry.group == "psf_wings" or inst != "nircam":  # NIRISS/FGS wings come with the library
                    members.append((f"{folder}/psf_wings/{wings}", psf_wings_bytes(cards)))
    return _tar(members)


def exposure_entries(catalog: Catalog | None = None) -> list:
    catalog = catalog or load_catalog()
    wanted = [e.relative_path for e in catalog if e.group in ("cosmic_ray_library", "psf_library", "psf_wings")]
    for entries in dark_entries().values():
        wanted += [e.relative_path for e in entries]
    wanted += [e.relative_path for e in dark_entries("raw")[("nircam", "A1")]]
    return list(catalog.subset(wanted))


def make_exposure_collection(root: Path) -> Catalog:
    """Write the small collection below *root* (catalog paths) and ``root/catalog.tsv``."""
    root.mkdir(parents=True, exist_ok=True)
    entries = exposure_entries()
    checks = {}
    for entry in entries:
        data = collection_members(entry)
        path = root / entry.relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        checks[entry.relative_path] = (len(data), hashlib.sha256(data).hexdigest())
    catalog = Catalog(entries=tuple(entries), base_url=root.as_uri() + "/", source=str(root / "catalog.tsv"))
    catalog = catalog.with_checksums(checks)
    # keep the real collection's approximate sizes: reports compare with the real default collection
    catalog = replace(catalog, entries=tuple(catalog.entries))
    catalog.write(root / "catalog.tsv")
    return load_catalog(root / "catalog.tsv")
