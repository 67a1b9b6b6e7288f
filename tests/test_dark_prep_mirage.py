"""Prepared darks against real Mirage 2.5 (``mirage.dark.dark_prep.DarkPrep``), linearized darks.

Every case is run through Mirage's own DarkPrep (one subprocess for the module, see
`dark_prep_cases.run_mirage`) and through `prepare_dark`; where Mirage is right the arrays must
be equal within float32 rounding and the headers must carry what Mirage's simulators read.
Mirage's choice of darks for ``nint > 1`` is unseeded: the runner seeds ``numpy.random``
and reports the files it took, which are then given to `prepare_dark` as its sources, so the
comparison is integration by integration. Where Mirage is wrong (MIRAGE_USAGE.md 1.10), the
test shows Mirage's output or failure and why ours is right.
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

import dark_prep_cases as C
from mirage_data.darks.prep import DarkSource, choose_sources, prepare_dark, read_dark_exposure

SIM_KEYS = ("READPATT", "NINTS", "NGROUPS", "NFRAMES", "NSKIP", "DETECTOR", "INSTRUME", "FASTAXIS", "SLOWAXIS")
EXTS = ("SCI", "SBANDREFPIX", "ZEROFRAME", "ZEROSBANDREFPIX")

# (name, instrument, detector, aperture, readpatt, ngroup, dark shape, dark frames, extra dark options)
SINGLE = [
    ("rapid", "nircam", "NRCB1", "NRCB1_SUB160", "RAPID", 5, (168, 168), 30, {}),
    ("bright1", "nircam", "NRCB1", "NRCB1_SUB160", "BRIGHT1", 4, (168, 168), 30, {}),
    ("bright2", "nircam", "NRCB1", "NRCB1_SUB160", "BRIGHT2", 4, (168, 168), 30, {}),
    ("shallow2", "nircam", "NRCB1", "NRCB1_SUB160", "SHALLOW2", 3, (168, 168), 30, {}),
    ("shallow4", "nircam", "NRCB1", "NRCB1_SUB160", "SHALLOW4", 3, (168, 168), 30, {}),
    ("medium2", "nircam", "NRCB1", "NRCB1_SUB160", "MEDIUM2", 2, (168, 168), 30, {}),
    ("medium8", "nircam", "NRCB1", "NRCB1_SUB160", "MEDIUM8", 2, (168, 168), 30, {}),
    ("deep2", "nircam", "NRCB1", "NRCB1_SUB160", "DEEP2", 1, (168, 168), 30, {}),
    # 40 frames from a 24-frame dark (group 1 averages frames 20-27): Mirage's padding is right
    # below twice the dark's length
    ("deep8_padded", "nircam", "NRCB1", "NRCB1_SUB160", "DEEP8", 2, (168, 168), 24, {}),
    ("no_zeroframe", "nircam", "NRCB1", "NRCB1_SUB160", "SHALLOW4", 2, (168, 168), 12, {"zeroframe": False}),
    ("offset_subarray", "nircam", "NRCA3", "NRCA3_SUB64P", "BRIGHT2", 3, (168, 168), 12, {}),
    ("full_frame", "nircam", "NRCA1", "NRCA1_FULL", "RAPID", 2, (2048, 2048), 3, {}),
    ("niriss_nis", "niriss", "NIS", "NIS_AMI1", "NIS", 2, (84, 1128), 10, {}),
    ("niriss_rapid", "niriss", "NIS", "NIS_AMI1", "NISRAPID", 3, (84, 1128), 10, {}),
    ("fgs", "fgs", "GUIDER1", "FGS1_SUB8CNTR", "FGS", 2, (1032, 1032), 10, {}),
    ("fgs_rapid", "fgs", "GUIDER1", "FGS1_SUB8CNTR", "FGSRAPID", 3, (1032, 1032), 10, {}),
]


@pytest.fixture(scope="module")
def mirage_runs(tmp_path_factory):
    """Write every case, run Mirage's DarkPrep on all of them once; {name: (yaml, result)}."""
    root = tmp_path_factory.mktemp("dark_prep_mirage")
    (root / "mirage").mkdir()
    cases, names = [], []

    def add(name, yaml_path, seed=0):
        cases.append({"yaml": str(yaml_path), "seed": seed})
        names.append(name)

    for k, (name, inst, det, aperture, patt, ngroup, shape, nframes, extra) in enumerate(SINGLE):
        dark = C.write_linear_dark(
            root / "darks" / name / f"{name}_dark.fits",
            instrument=inst,
            detector=det,
            shape=shape,
            nframes=nframes,
            seed=k,
            **extra,
        )
        add(
            name,
            C.write_yaml(
                root / f"{name}.yaml",
                instrument=inst,
                aperture=aperture,
                readpatt=patt,
                ngroup=ngroup,
                nint=1,
                out_dir=root / "mirage",
                linearized=dark,
            ),
        )
    # nint = 2: NIRCam from a folder of three same-detector darks, FGS from GUIDER1 files (_497_)
    folder = root / "darks" / "nint2"
    ds = [C.write_linear_dark(folder / f"dark_{i}.fits", nframes=12, seed=10 + i) for i in range(3)]
    add(
        "nint2",
        C.write_yaml(
            root / "nint2.yaml",
            instrument="nircam",
            aperture="NRCB1_SUB160",
            readpatt="SHALLOW2",
            ngroup=2,
            nint=2,
            out_dir=root / "mirage",
            linearized=ds[0],
        ),
        seed=3,
    )
    fgs_folder = root / "darks" / "fgs_nint2"
    fg = [
        C.write_linear_dark(
            fgs_folder / f"fgs_1_497_{i}_linearized.fits",
            instrument="fgs",
            detector="GUIDER1",
            shape=(1032, 1032),
            nframes=10,
            seed=20 + i,
        )
        for i in range(2)
    ]
    C.write_linear_dark(
        fgs_folder / "fgs_1_498_0_linearized.fits",
        instrument="fgs",
        detector="GUIDER2",
        shape=(1032, 1032),
        nframes=10,
        seed=30,
    )
    add(
        "fgs_nint2",
        C.write_yaml(
            root / "fgs_nint2.yaml",
            instrument="fgs",
            aperture="FGS1_SUB8CNTR",
            readpatt="FGSRAPID",
            ngroup=3,
            nint=2,
            out_dir=root / "mirage",
            linearized=fg[0],
        ),
        seed=5,
    )
    # Bug cases
    multi = C.write_linear_dark(root / "darks" / "multi" / "multi.fits", nframes=12, nints=2, seed=40)
    add(
        "multi_int",
        C.write_yaml(
            root / "multi_int.yaml",
            instrument="nircam",
            aperture="NRCB1_SUB160",
            readpatt="BRIGHT2",
            ngroup=3,
            nint=1,
            out_dir=root / "mirage",
            linearized=multi,
        ),
    )
    nonrapid = C.write_linear_dark(root / "darks" / "bright2" / "bright2.fits", nframes=6, readpatt="BRIGHT2", seed=41)
    add(
        "nonrapid",
        C.write_yaml(
            root / "nonrapid.yaml",
            instrument="nircam",
            aperture="NRCB1_SUB160",
            readpatt="BRIGHT2",
            ngroup=4,
            nint=1,
            out_dir=root / "mirage",
            linearized=nonrapid,
        ),
    )
    short = C.write_linear_dark(root / "darks" / "short" / "short.fits", nframes=12, seed=42)
    add(
        "pad_2n",
        C.write_yaml(
            root / "pad_2n.yaml",
            instrument="nircam",
            aperture="NRCB1_SUB160",
            readpatt="RAPID",
            ngroup=30,
            nint=1,
            out_dir=root / "mirage",
            linearized=short,
        ),
    )
    mixed = root / "darks" / "mixed"
    own = C.write_linear_dark(mixed / "a_nrcb1.fits", nframes=6, seed=50)
    C.write_linear_dark(mixed / "b_nrcb2.fits", detector="NRCB2", nframes=6, seed=51)
    C.write_linear_dark(mixed / "c_nrcb1.fits", nframes=6, seed=52)
    for seed in range(6):
        add(
            f"mixed_{seed}",
            C.write_yaml(
                root / f"mixed_{seed}.yaml",
                instrument="nircam",
                aperture="NRCB1_SUB160",
                readpatt="RAPID",
                ngroup=3,
                nint=2,
                out_dir=root / "mirage",
                linearized=own,
            ),
            seed=seed,
        )
    results = C.run_mirage(cases, root / "run")
    return root, {n: (Path(c["yaml"]), r) for n, c, r in zip(names, cases, results, strict=True)}


def _ours(yaml_path: Path, out: Path, **kw):
    return prepare_dark(yaml_path, out, **kw)


def _compare(ours_path, mirage_path, label):
    a, b = C.read_product(ours_path), C.read_product(mirage_path)
    for ext in EXTS:
        assert a["dtypes"][ext].kind == "f" and a["dtypes"][ext].itemsize == 4, (label, ext)
        C.assert_float32_equal(a[ext], b[ext], f"{label} {ext}")
    for key in SIM_KEYS:
        assert a["header"][key] == b["header"][key], (label, key, a["header"][key], b["header"][key])
    return a, b


@pytest.mark.parametrize("case", [c[0] for c in SINGLE])
def test_equals_mirage(mirage_runs, tmp_path, case):
    """Patterns, zero frames, subarrays (origin and offset), full frame, NIRCam/NIRISS/FGS, padding < 2n."""
    root, runs = mirage_runs
    yaml_path, result = runs[case]
    assert result["ok"], result.get("error")
    ours = _ours(yaml_path, tmp_path)
    assert [p.name for p in ours] == [Path(f).name for f in result["files"]]
    a, _ = _compare(ours[0], result["files"][0], case)
    # D7: Mirage writes N/A; the dark's own provenance is carried over
    for key in ("R_LINEAR", "R_MASK", "R_SATURA", "R_SUPERB"):
        assert a["header"][key].startswith("jwst_")


@pytest.mark.parametrize("case", ["nint2", "fgs_nint2"])
def test_two_integrations_equal_mirage_integration_by_integration(mirage_runs, tmp_path, case):
    root, runs = mirage_runs
    yaml_path, result = runs[case]
    assert result["ok"], result.get("error")
    chosen = result["chosen"]
    assert chosen and len(chosen) == 2
    ours = _ours(yaml_path, tmp_path, sources=[DarkSource(Path(f), 0) for f in chosen])
    a, b = _compare(ours[0], result["files"][0], case)
    assert a["header"]["NINTS"] == 2
    # and our own (seeded) choice: two distinct integrations of the yaml dark's detector
    picked = choose_sources(read_dark_exposure(yaml_path), seed=1)[0]
    assert len(set(picked)) == 2 and picked[0].path == read_dark_exposure(yaml_path).dark
    if case == "fgs_nint2":
        assert all("_497_" in s.path.name for s in picked)


def test_multi_integration_dark_mirage_fails_ours_uses_each_integration(mirage_runs, tmp_path):
    """D5: Mirage's reorder_dark indexes its one-integration buffer by the dark's integration."""
    root, runs = mirage_runs
    yaml_path, result = runs["multi_int"]
    assert not result["ok"] and "IndexError" in result["error"]
    exposure = read_dark_exposure(yaml_path)
    ours = C.read_product(_ours(yaml_path, tmp_path / "a", sources=[DarkSource(exposure.dark, 1)])[0])
    # integration 1 of the file, prepared, equals what Mirage makes of a one-integration file holding it
    from astropy.io import fits

    with fits.open(exposure.dark) as h:
        single = tmp_path / "single" / "int1.fits"
        single.parent.mkdir()
        fits.HDUList([h[0].copy()] + [fits.ImageHDU(h[n].data[1:2], name=n) for n in EXTS]).writeto(single)
    y = C.write_yaml(
        tmp_path / "single.yaml",
        instrument="nircam",
        aperture="NRCB1_SUB160",
        readpatt="BRIGHT2",
        ngroup=3,
        nint=1,
        out_dir=tmp_path / "mirage",
        linearized=single,
    )
    (tmp_path / "mirage").mkdir()
    [ref] = C.run_mirage([{"yaml": str(y), "seed": 0}], tmp_path / "run")
    assert ref["ok"], ref.get("error")
    theirs = C.read_product(ref["files"][0])
    for ext in EXTS:
        C.assert_float32_equal(ours[ext], theirs[ext], f"integration 1 {ext}")


def test_non_rapid_linearized_dark_mirage_nan_zero_ours_passes_through(mirage_runs, tmp_path):
    """D6 (and D4): a BRIGHT2 linearized dark for a BRIGHT2 exposure.

    Mirage keeps no SBANDREFPIX of the zero frame for a non-one-frame dark and assigns None
    into its float32 buffer: with numpy 2 that is NaN, so the zero frame Mirage simulates from
    it is NaN everywhere. (It also pads the 6-group dark to 8 "frames", D4, harmlessly here.)
    Ours passes the dark through with its own ZEROSBANDREFPIX.
    """
    root, runs = mirage_runs
    yaml_path, result = runs["nonrapid"]
    assert result["ok"], result.get("error")
    theirs = C.read_product(result["files"][0])
    assert np.isnan(theirs["ZEROSBANDREFPIX"]).all()
    ours = C.read_product(_ours(yaml_path, tmp_path)[0])
    assert not np.isnan(ours["ZEROSBANDREFPIX"]).any()
    for ext in ("SCI", "SBANDREFPIX", "ZEROFRAME"):
        C.assert_float32_equal(ours[ext], theirs[ext], ext)
    from astropy.io import fits

    with fits.open(read_dark_exposure(yaml_path).dark) as h:
        np.testing.assert_array_equal(ours["SCI"][0], h["SCI"].data[0, :4, :160, :160])
        np.testing.assert_array_equal(ours["SBANDREFPIX"][0], h["SBANDREFPIX"].data[0, :4, :160, :160])
        np.testing.assert_array_equal(ours["ZEROFRAME"][0], h["ZEROFRAME"].data[0, :160, :160])
        np.testing.assert_array_equal(ours["ZEROSBANDREFPIX"][0], h["ZEROSBANDREFPIX"].data[0, :160, :160])


def test_padding_beyond_twice_the_dark_mirage_doubles_the_bias(mirage_runs, tmp_path):
    """D3: 30 RAPID frames from a 12-frame dark."""
    root, runs = mirage_runs
    yaml_path, result = runs["pad_2n"]
    assert result["ok"], result.get("error")
    ours = C.read_product(_ours(yaml_path, tmp_path)[0])
    theirs = C.read_product(result["files"][0])
    n = 12
    # the same up to the dark's end ...
    for ext in ("SCI", "SBANDREFPIX"):
        C.assert_float32_equal(ours[ext][0, :n], theirs[ext][0, :n], ext)
    # ... then, as 30 >= 2n, Mirage appends a whole copy plus the last frame, frame 0 included:
    # the bias in SBANDREFPIX (~12000 DN) is counted twice from frame n on, a jump of a whole bias
    sb_m, sb_o = theirs["SBANDREFPIX"][0], ours["SBANDREFPIX"][0]
    assert np.median(sb_m[n] - sb_m[n - 1]) > 10000
    assert abs(np.median(sb_o[n] - sb_o[n - 1])) < 5
    assert np.median(sb_o[-1]) < 1.1 * np.median(sb_o[0])


def test_mixed_detector_folder_mirage_mixes_ours_never(mirage_runs, tmp_path):
    """D2: for nint > 1 Mirage globs every *.fits of the folder, whatever its detector."""
    from astropy.io import fits

    root, runs = mirage_runs
    mirage_took_other = False
    for seed in range(6):
        yaml_path, result = runs[f"mixed_{seed}"]
        assert result["ok"], result.get("error")
        mirage_took_other |= any("nrcb2" in Path(f).name for f in result["chosen"])
        sources, used_seed, _ = choose_sources(read_dark_exposure(yaml_path), seed=seed)
        assert used_seed == seed
        assert all(fits.getval(s.path, "DETECTOR") == "NRCB1" for s in sources)
    assert mirage_took_other, "with these seeds Mirage puts the NRCB2 dark into an NRCB1 exposure"


def test_yaml_generator_pick_never_takes_the_last_dark_ours_does(tmp_path):
    """D1: SimInput.get_lindark draws randint(0, len - 1): the last file is never picked."""
    from mirage.yaml.yaml_generator import SimInput

    files = [f"d{i}.fits" for i in range(3)]
    fake = types.SimpleNamespace(lindark_list={"nircam": {"B1": files}})
    np.random.seed(0)
    picks = {SimInput.get_lindark(fake, "nircam", "B1") for _ in range(200)}
    assert picks == set(files[:2])
    folder = tmp_path / "darks"
    ds = [C.write_linear_dark(folder / f, shape=(168, 168), nframes=4, seed=i) for i, f in enumerate(files)]
    y = C.write_yaml(
        tmp_path / "y.yaml",
        instrument="nircam",
        aperture="NRCB1_SUB160",
        readpatt="RAPID",
        ngroup=2,
        nint=3,
        out_dir=tmp_path / "out",
        linearized=ds[0],
    )
    sources, _, reused = choose_sources(read_dark_exposure(y), seed=0)
    assert {s.path.name for s in sources} == set(files) and not reused
