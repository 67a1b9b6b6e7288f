"""Test material for prepared darks: small synthetic darks, Mirage input yamls, and real Mirage 2.5 runs.

Darks are small where Mirage allows it: its dark_prep crops with ``[y0:y1+1, x0:x1+1]`` and
crops only when the bounds are not the whole frame, so a dark just larger than a subarray's
far corner (e.g. 168 x 168 for ``NRCB1_SUB160`` at (0, 0)-(159, 159)) gives the same result
as a full frame. Full-frame apertures need 2048 x 2048 darks (kept to a few frames).

`run_mirage` runs real ``mirage.dark.dark_prep.DarkPrep`` in a subprocess (its own folder,
where Mirage writes its log file), with ``numpy.random`` seeded before each case, and reports
which dark files Mirage's unseeded choice took (recomputed from the same seed in the same
process, with the same glob, just before the run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import yaml
from astropy.io import fits

FILTERS = {"nircam": ("F200W", "CLEAR"), "niriss": ("CLEAR", "F150W"), "fgs": ("N/A", "N/A")}
INSTRUME = {"nircam": "NIRCAM", "niriss": "NIRISS", "fgs": "FGS"}


def write_linear_dark(
    path: str | os.PathLike,
    *,
    instrument: str = "nircam",
    detector: str = "NRCB1",
    shape: tuple[int, int] = (168, 168),
    nframes: int = 12,
    nints: int = 1,
    readpatt: str | None = None,
    seed: int = 0,
    zeroframe: bool = True,
    zerosb: bool = True,
    refs: bool = True,
    rate: float = 0.5,
    jump_at: int | None = None,
) -> Path:
    """A linearized dark: SCI accumulating dark current (DN), SBANDREFPIX ~ bias + drift.

    *jump_at*: add a step of 50 DN to SCI from that frame on (a planted discontinuity).
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    rates = rng.uniform(0.5 * rate, 1.5 * rate, (ny, nx)).astype(np.float32)
    t = np.arange(nframes, dtype=np.float32)[:, None, None]
    sci = np.empty((nints, nframes, ny, nx), np.float32)
    sb = np.empty_like(sci)
    bias = rng.normal(12000, 300, (ny, nx)).astype(np.float32)
    for i in range(nints):
        sci[i] = t * rates + rng.normal(0, 3, (nframes, ny, nx)).astype(np.float32) + 2.0
        if jump_at is not None:
            sci[i, jump_at:] += 50.0
        sb[i] = bias + rng.normal(0, 2, (nframes, 1, nx)).astype(np.float32) + 0.3 * t
    h = fits.PrimaryHDU()
    h.header["INSTRUME"] = INSTRUME[instrument]
    h.header["DETECTOR"] = detector
    h.header["READPATT"] = readpatt or {"nircam": "RAPID", "niriss": "NISRAPID", "fgs": "FGSRAPID"}[instrument]
    h.header["NINTS"] = nints
    h.header["NGROUPS"] = nframes
    h.header["NFRAMES"] = 1 if readpatt in (None, "RAPID", "NISRAPID", "FGSRAPID") else 2
    h.header["NSKIP"] = 0
    h.header["FASTAXIS"] = {"nircam": -1, "niriss": 2, "fgs": 2}[instrument] if detector != "NRCB1" else 1
    h.header["SLOWAXIS"] = {"nircam": 2, "niriss": -1, "fgs": 1}[instrument] if detector != "NRCB1" else -2
    h.header["TFRAME"] = 10.0
    h.header["TGROUP"] = 20.0
    if refs:
        h.header["R_LINEAR"] = f"jwst_{instrument}_linearity_0001.fits"
        h.header["R_MASK"] = f"jwst_{instrument}_mask_0001.fits"
        h.header["R_SATURA"] = f"jwst_{instrument}_saturation_0001.fits"
        h.header["R_SUPERB"] = f"jwst_{instrument}_superbias_0001.fits"
    hdus = [h, fits.ImageHDU(sci, name="SCI"), fits.ImageHDU(sb, name="SBANDREFPIX")]
    if zeroframe:
        hdus.append(fits.ImageHDU(sci[:, 0] - rng.normal(0, 1, (nints, ny, nx)).astype(np.float32), name="ZEROFRAME"))
    if zerosb:
        hdus.append(fits.ImageHDU(sb[:, 0] + 1.0, name="ZEROSBANDREFPIX"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def write_yaml(
    path: str | os.PathLike,
    *,
    instrument: str,
    aperture: str,
    readpatt: str,
    ngroup: int,
    nint: int,
    out_dir: str | os.PathLike,
    linearized: str | os.PathLike | None = None,
    raw: str | os.PathLike | None = None,
    refs: dict | None = None,
    out_file: str | None = None,
    mode: str = "imaging",
) -> Path:
    """A Mirage input yaml with what dark_prep reads (every path key Mirage expands present)."""
    refs = refs or {}
    filt, pupil = FILTERS[instrument]
    none = "None"
    reffiles = {
        k: none
        for k in (
            "dark linearized_darkfile badpixmask superbias linearity saturation gain pixelflat illumflat ipc "
            "astrometric crosstalk occult pixelAreaMap transmission filter_throughput photom"
        ).split()
    }
    reffiles.update(
        {
            "dark": str(raw) if raw else none,
            "linearized_darkfile": str(linearized) if linearized else none,
            "badpixmask": str(refs.get("mask", none)),
            "superbias": str(refs.get("superbias", none)),
            "linearity": str(refs.get("linearity", none)),
            "saturation": str(refs.get("saturation", none)),
            "subarray_defs": "config",
            "readpattdefs": "config",
            "filtpupilcombo": "config",
            "flux_cal": "config",
            "filter_wheel_positions": "config",
            "invertIPC": True,
        }
    )
    params = {
        "Inst": {
            "instrument": {"nircam": "NIRCam", "niriss": "NIRISS", "fgs": "FGS"}[instrument],
            "mode": mode,
            "use_JWST_pipeline": True,
        },
        "Readout": {
            "readpatt": readpatt,
            "ngroup": ngroup,
            "nint": nint,
            "resets_bet_ints": 1,
            "array_name": aperture,
            "filter": filt,
            "pupil": pupil,
            "namp": 1,
        },
        "Reffiles": reffiles,
        "simSignals": {
            k: none
            for k in (
                "pointsource psfpath galaxyListFile extended movingTargetList "
                "movingTargetSersic movingTargetExtended movingTargetToTrack "
                "psf_wing_threshold_file zodiacal scattered"
            ).split()
        },
        "cosmicRay": {"path": none, "library": "SUNMAX", "scale": 1.0, "suffix": none, "seed": 1},
        "Telescope": {"ra": 10.0, "dec": 10.0, "rotation": 0.0},
        "Output": {"file": out_file or (Path(path).stem + "_uncal.fits"), "directory": str(out_dir)},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


_RUNNER = textwrap.dedent(
    """
    import json, os, sys, glob
    import numpy as np
    import yaml
    from mirage.dark.dark_prep import DarkPrep
    from mirage.utils.constants import FGS1_DARK_SEARCH_STRING, FGS2_DARK_SEARCH_STRING

    results = []
    for index, case in enumerate(json.load(open(sys.argv[1]))):
        params = yaml.safe_load(open(case["yaml"]))
        nint = int(params["Readout"]["nint"])
        chosen = None
        lin = params["Reffiles"]["linearized_darkfile"]
        dark = lin if str(lin).lower() != "none" else params["Reffiles"]["dark"]
        if nint > 1:
            search = "*.fits"
            if "FGS1" in params["Readout"]["array_name"]:
                search = FGS1_DARK_SEARCH_STRING
            elif "FGS2" in params["Readout"]["array_name"]:
                search = FGS2_DARK_SEARCH_STRING
            files = glob.glob(os.path.join(os.path.dirname(os.path.abspath(dark)), search))
            np.random.seed(case["seed"])
            if nint <= len(files):
                chosen = [files[i] for i in np.random.choice(len(files), nint, replace=False)]
        np.random.seed(case["seed"])
        d = DarkPrep(offline=True)
        d.paramfile = case["yaml"]
        try:
            d.prepare()
            files = d.dark_files if isinstance(d.dark_files, list) else [d.dark_files]
            results.append({"ok": True, "files": files, "chosen": chosen})
        except Exception as exc:
            result = {"ok": False, "error": type(exc).__name__ + ": " + str(exc)[:300], "chosen": chosen}
            lin = getattr(d, "linDark", None)
            if case.get("keep_linearized") and getattr(lin, "sbAndRefpix", None) is not None:
                # what Mirage had linearized (full frame) before it failed
                result["linearized"] = os.path.abspath(f"linearized_{index}.npz")
                np.savez(result["linearized"], sci=np.asarray(lin.data), sb=np.asarray(lin.sbAndRefpix))
            results.append(result)
    json.dump(results, open(sys.argv[2], "w"))
    """
)


def run_mirage(cases: list[dict], workdir: str | os.PathLike, env: dict | None = None, timeout: int = 900) -> list:
    """Run Mirage 2.5's DarkPrep on each case ``{"yaml": path, "seed": int}`` in one subprocess.

    Returns per case ``{"ok", "files" | "error", "chosen"}`` (``chosen``: the dark files Mirage's
    random choice took for ``nint > 1``, in integration order). With ``"keep_linearized": True``
    a case that fails after linearizing a raw dark also gets ``"linearized"``: an ``.npz`` of
    Mirage's full-frame linearized ``sci`` and ``sb`` at that point.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "run_dark_prep.py"
    script.write_text(_RUNNER)
    (workdir / "cases.json").write_text(json.dumps(cases))
    full_env = dict(os.environ)
    full_env.setdefault("MIRAGE_DATA", str(workdir))
    full_env.setdefault("CRDS_PATH", str(workdir / "crds_cache"))
    full_env.setdefault("CRDS_SERVER_URL", "https://jwst-serverless-mode.stsci.edu")
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, str(script), "cases.json", "results.json"],
        cwd=workdir,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"Mirage runner failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads((workdir / "results.json").read_text())


def read_product(path) -> dict:
    with fits.open(path) as h:
        out = {name: h[name].data.astype(np.float32) for name in ("SCI", "SBANDREFPIX", "ZEROFRAME", "ZEROSBANDREFPIX")}
        out["header"] = h[0].header.copy()
        out["dtypes"] = {name: h[name].data.dtype for name in ("SCI", "SBANDREFPIX", "ZEROFRAME", "ZEROSBANDREFPIX")}
    return out


def assert_float32_equal(ours: np.ndarray, theirs: np.ndarray, label: str, ulps: float = 4) -> float:
    """Equal within float32 rounding: |a - b| <= ulps * eps32 * max(|a|, |b|, 1)."""
    assert ours.shape == theirs.shape, f"{label}: shape {ours.shape} vs Mirage's {theirs.shape}"
    a, b = ours.astype(np.float64), theirs.astype(np.float64)
    scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), 1.0)
    rel = np.abs(a - b) / scale
    worst = float(rel.max()) if rel.size else 0.0
    assert worst <= ulps * np.finfo(np.float32).eps, f"{label}: differs from Mirage by {worst:.3g} (relative)"
    return worst


# ---------------------------------------------------------------------------------------------
# A local CRDS cache answering the superbias look-up of jwst's SaturationStep (Mirage passes it
# only override_saturation, so the step asks CRDS for a superbias with the dark's metadata)


def _mapping(path: Path, text: str) -> None:
    import hashlib

    body = "".join(line for line in text.splitlines(True) if "sha1sum" not in line)
    path.write_text(text.replace("@SHA1SUM@", hashlib.sha1(body.encode("utf-8")).hexdigest()))


def write_superbias_crds_cache(root: str | os.PathLike, superbias: dict[str, Path]) -> dict[str, str]:
    """A CRDS cache whose rules give, per detector, a copy of the given superbias file.

    Returns the environment under which the jwst steps (and so Mirage's raw-dark path) run
    offline against it (no step parameters from CRDS, serverless URL, local mode).
    """
    import shutil

    import jwst_reference_files as J

    root = Path(root)
    mappings = root / "mappings" / "jwst"
    mappings.mkdir(parents=True, exist_ok=True)
    context = "jwst_9200.pmap"
    by_inst: dict[str, dict[str, str]] = {}
    for k, (detector, path) in enumerate(sorted(superbias.items())):
        inst = J.instrument_of(detector)
        name = f"jwst_{inst.lower()}_superbias_{9201 + k}.fits"
        folder = root / "references" / "jwst" / inst.lower()
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / name)
        by_inst.setdefault(inst, {})[detector] = name
    imaps = {}
    for inst, files in by_inst.items():
        rmap = f"jwst_{inst.lower()}_superbias_9200.rmap"
        rows = "".join(
            f"    '{det}' : UseAfter({{\n        '2010-01-01 00:00:00' : '{name}',\n    }}),\n"
            for det, name in sorted(files.items())
        )
        _mapping(
            mappings / rmap,
            f"""header = {{
    'classes' : ('Match', 'UseAfter'),
    'derived_from' : 'written for mirage-data tests',
    'filekind' : 'SUPERBIAS',
    'instrument' : '{inst}',
    'mapping' : 'REFERENCE',
    'name' : '{rmap}',
    'observatory' : 'JWST',
    'parkey' : (('META.INSTRUMENT.DETECTOR',), ('META.OBSERVATION.DATE', 'META.OBSERVATION.TIME')),
    'sha1sum' : '@SHA1SUM@',
}}

selector = Match({{
{rows}}})
""",
        )
        imap = f"jwst_{inst.lower()}_9200.imap"
        _mapping(
            mappings / imap,
            f"""header = {{
    'derived_from' : 'written for mirage-data tests',
    'instrument' : '{inst}',
    'mapping' : 'INSTRUMENT',
    'name' : '{imap}',
    'observatory' : 'JWST',
    'parkey' : ('META.EXPOSURE.TYPE',),
    'sha1sum' : '@SHA1SUM@',
}}

selector = {{
    'superbias' : '{rmap}',
}}
""",
        )
        imaps[inst] = imap
    rows = "".join(f"    '{inst}' : '{imap}',\n" for inst, imap in sorted(imaps.items()))
    _mapping(
        mappings / context,
        f"""header = {{
    'derived_from' : 'written for mirage-data tests',
    'mapping' : 'PIPELINE',
    'name' : '{context}',
    'observatory' : 'JWST',
    'parkey' : ('META.INSTRUMENT.NAME',),
    'sha1sum' : '@SHA1SUM@',
}}

selector = {{
{rows}}}
""",
    )
    config = J.write_crds_server_config(root, context)
    (config / "ref_cache_subdir_mode").write_text("instrument")
    return {
        "CRDS_PATH": str(root),
        "CRDS_SERVER_URL": "https://jwst-serverless-mode.stsci.edu",
        "CRDS_CONTEXT": context,
        "CRDS_MODE": "local",
        "STPIPE_DISABLE_CRDS_STEPPARS": "True",
    }
