"""A small, synthetic SAMPLE COLLECTION: the remote side of the real collection in miniature.

`make_sample_collection` writes, below a folder, a subset of the real collection's files at
exactly their catalog paths (same names, same formats, same archive layout), plus a
``catalog.tsv`` with exact sizes and sha256 whose ``base_url`` is the folder's ``file://`` URI.
It is what ``mirage-data demo`` downloads from and the fixture of the downloader's tests.

Every file is synthetic (the headers say so in a COMMENT card) but shaped like the real one:

* darks: full-frame 2048 x 2048 ``.fits.gz`` with only ``ngroups`` groups and 1 integration,
  raw (``SCI`` uint16, ``ZEROFRAME``) and linearized (``SCI``, ``SBANDREFPIX``, ``ZEROFRAME``,
  ``ZEROSBANDREFPIX``, float32), the linearized one derived from the raw one of the same
  exposure exactly as FORMATS.md section 3 describes (``SBANDREFPIX = raw - signal``);
* tarballs whose members sit under ``mirage_data/<instrument>/...`` as Mirage's layout expects:
  cosmic-ray libraries, gridded PSF libraries (photutils/WebbPSF convention), NIRCam PSF wings,
  NIRISS ghost stamps and SOSS PSFs, NIRCam distortion files.

The output is byte-for-byte deterministic for a given seed (gzip mtime 0, fixed tar mtimes,
fixed FITS dates) and generation is idempotent (see `make_sample_collection`). The default
sample (2 groups) is 45 files, about 340 MB, written in about 4 s on 2 cores.

Choices where the real files could not be checked (no network when this was written):

* FASTAXIS/SLOWAXIS are the per-detector DMS values of `DETECTOR_AXES`.
* PSF libraries: one filter per detector, F200W/CLEAR (NIRCam short wave), F444W/CLEAR
  (NIRCam long wave, detector named ``nrca5``/``nrcb5`` as WebbPSF does), F277W/CLEARP
  (NIRISS: a filter-wheel filter, as Mirage swaps filter and pupil for pupil-wheel ones) and
  no filter for FGS (``fgs_guider1_fovp..._npsf..._predicted_realization0.fits``, the pattern
  Mirage globs for FGS; FILTER = PUPIL = 'N/A' in the header). 2 x 2 grid, fovp 11, samp 2,
  each PSF summing to OVERSAMP**2 as WebbPSF writes them for photutils.
* PSF wings: ``nircam_<det>_<filter>_clear_fovp101_samp1_predicted_realization0.fits`` with the
  image (odd size) in extension ``DET_DIST``, the pattern Mirage globs in ``psf_wings/``.
* Cosmic rays: files 00 and 01 of each library only (Mirage reads 00..09), 20 stamps each.
* Ghosts: ``niriss_ghost_cen.fits`` (Mirage's default) and ``niriss_ghost_cen_f150w.fits``
  (name invented). SOSS: ``SOSS_CLEAR_PSF.fits`` (cube + ``WAV``) and
  ``SOSS_CLEAR_PSF_order1_1.npy`` (names after Mirage's soss_trace module). Distortion:
  ``<DETECTOR>_FULL_distortion.asdf`` per NIRCam detector (names invented, minimal ASDF).
* Calibration file names in the linearized darks' R_* keywords are invented.

The code is split by what it writes: ``collection`` (which files, and writing them
idempotently with their catalog), ``darks`` (the detector model and the streamed dark
pairs), ``archives`` (the tarballs and their members) and ``common`` (seeding, fixed dates,
safe writes).

Examples
--------
>>> from mirage_data.testing.sample import make_sample_collection, sample_entries
>>> entries = sample_entries()
>>> len(entries), sum(e.is_dark for e in entries)
(45, 32)

Writing them (about 4 s and 340 MB; the tests' fixtures and ``mirage-data demo`` do it)::

    catalog = make_sample_collection("/tmp/sample")
    catalog.base_url        # 'file:///tmp/sample/'
"""

from .collection import CATALOG_NAME, make_sample_collection, sample_entries
from .darks import DETECTOR_AXES

__all__ = [
    "CATALOG_NAME",
    "DETECTOR_AXES",
    "make_sample_collection",
    "sample_entries",
]
