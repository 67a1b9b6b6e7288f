"""Prepared darks from raw darks against real Mirage 2.5 (its DarkPrep, running the jwst 3.0 steps).

Mirage linearizes a raw dark with the jwst steps after averaging it into the requested
pattern, then crops. jwst's SaturationStep (since 1.19) also reads a SUPERBIAS, which Mirage
does not override: a local CRDS cache answers that look-up with the same superbias file
(`dark_prep_cases.write_superbias_crds_cache`), and everything runs offline (serverless CRDS,
no step parameters from CRDS). Ours linearizes in the same pass with the project's
pipeline-equal chain; arrays must equal Mirage's within float32 rounding.

For group-averaged output Mirage linearizes the zero frame as a one-group ramp whose header it
rebuilt from the linearized model with lookups that fail (``meta['instrument.name']`` ...), so
INSTRUME is None and the superbias look-up of SaturationStep raises: Mirage 2.5 cannot make
these darks at all with jwst >= 1.19. The test compares what Mirage had linearized before it
failed (SCI, SBANDREFPIX) and checks the zero frame against the jwst steps run on the raw
zero frame as a one-group ramp, which is what Mirage means to do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import dark_prep_cases as C
import jwst_reference_files as J
from mirage_data.darks.prep import prepare_dark, read_dark_exposure

SIM_KEYS = ("READPATT", "NINTS", "NGROUPS", "NFRAMES", "NSKIP", "DETECTOR", "INSTRUME", "FASTAXIS", "SLOWAXIS")
EXTS = ("SCI", "SBANDREFPIX", "ZEROFRAME", "ZEROSBANDREFPIX")


@pytest.fixture(scope="module")
def raw_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dark_prep_raw")
    refs = {
        "NRCA1": J.write_reference_set(root / "refs_nrca1", "NRCA1", ncoeffs=3),
        "NIS": J.write_reference_set(root / "refs_nis", "NIS", ncoeffs=3),
    }
    (root / "darks").mkdir()
    plain = J.write_raw_dark(root / "darks" / "nrca1_uncal.fits", "NRCA1", ngroups=5, seed=3)
    ramp = J.make_ramp("NRCA1", 4, 1, seed=4)
    zero = (ramp[:, 0].astype(np.int32) - 3).clip(0, 65535).astype(np.uint16)
    with_zero = J.write_raw_dark(root / "darks" / "nrca1_zero_uncal.fits", "NRCA1", ramp=ramp, zeroframe=zero)
    nis = J.write_raw_dark(root / "darks" / "nis_uncal.fits", "NIS", ngroups=3, seed=5)
    env = C.write_superbias_crds_cache(
        root / "crds", {"NRCA1": refs["NRCA1"]["superbias"], "NIS": refs["NIS"]["superbias"]}
    )
    (root / "mirage").mkdir()
    specs = {
        "rapid_sub": ("nircam", "NRCA1_SUB160", "RAPID", 3, plain, "NRCA1"),
        "rapid_full": ("nircam", "NRCA1_FULL", "RAPID", 2, plain, "NRCA1"),
        "niriss_rapid": ("niriss", "NIS_AMI1", "NISRAPID", 3, nis, "NIS"),
        "bright2_zero": ("nircam", "NRCA1_SUB160", "BRIGHT2", 2, with_zero, "NRCA1"),
    }
    cases, yamls = [], {}
    for name, (inst, aperture, patt, ngroup, dark, det) in specs.items():
        y = C.write_yaml(
            root / f"{name}.yaml",
            instrument=inst,
            aperture=aperture,
            readpatt=patt,
            ngroup=ngroup,
            nint=1,
            out_dir=root / "mirage",
            raw=dark,
            refs=refs[det],
        )
        yamls[name] = y
        cases.append({"yaml": str(y), "seed": 0, "keep_linearized": True})
    results = C.run_mirage(cases, root / "run", env=env)
    return root, refs, env, {n: (yamls[n], r) for n, r in zip(specs, results, strict=True)}


@pytest.mark.parametrize("case", ["rapid_sub", "rapid_full", "niriss_rapid"])
def test_raw_dark_equals_mirage(raw_runs, tmp_path, case):
    root, refs, env, runs = raw_runs
    yaml_path, result = runs[case]
    assert result["ok"], result.get("error")
    ours = prepare_dark(yaml_path, tmp_path, use_crds=False)
    assert [p.name for p in ours] == [Path(f).name for f in result["files"]]
    a, b = C.read_product(ours[0]), C.read_product(result["files"][0])
    for ext in EXTS:
        C.assert_float32_equal(a[ext], b[ext], f"{case} {ext}")
    for key in SIM_KEYS:
        assert a["header"][key] == b["header"][key], key
    for key in ("R_LINEAR", "R_MASK", "R_SATURA", "R_SUPERB"):
        assert Path(b["header"][key]).name == a["header"][key]  # Mirage writes the full override path


def test_raw_dark_group_averaged_output(raw_runs, tmp_path):
    root, refs, env, runs = raw_runs
    yaml_path, result = runs["bright2_zero"]
    assert not result["ok"] and "META.INSTRUMENT.NAME" in result["error"], result
    exposure = read_dark_exposure(yaml_path)
    ours = C.read_product(prepare_dark(yaml_path, tmp_path, use_crds=False)[0])
    x0, y0, x1, y1 = exposure.bounds
    with np.load(result["linearized"]) as f:
        sci, sb = f["sci"][..., y0 : y1 + 1, x0 : x1 + 1], f["sb"][..., y0 : y1 + 1, x0 : x1 + 1]
    C.assert_float32_equal(ours["SCI"], sci.astype(np.float32), "SCI")
    C.assert_float32_equal(ours["SBANDREFPIX"], sb.astype(np.float32), "SBANDREFPIX")
    # the zero frame: the raw ZEROFRAME as a one-group ramp through the jwst steps
    pipe = J.run_pipeline_subprocess(
        exposure.dark, refs["NRCA1"], tmp_path / "zero.npz", tmp_path / "crds", zeroframe=True
    )
    C.assert_float32_equal(ours["ZEROFRAME"], pipe["sci"][:, 0, y0 : y1 + 1, x0 : x1 + 1], "ZEROFRAME")
    C.assert_float32_equal(
        ours["ZEROSBANDREFPIX"], pipe["sbandrefpix"][:, 0, y0 : y1 + 1, x0 : x1 + 1], "ZEROSBANDREFPIX"
    )
    assert (
        fits.getval(tmp_path / exposure.output_stem.__add__("_linear_dark_prep_object.fits"), "READPATT") == "BRIGHT2"
    )
