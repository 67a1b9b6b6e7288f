"""``mirage-data prepare --darks``: the prepared darks of the resolved yamls, their map and Mirage lines.

Runs the real ``prepare`` command (the fixtures of ``test_prepare``: a loopback collection and
CRDS server) on a program of two yamls: one on a dark of our own that holds its aperture, one
on the collection's (4 x 4) dark, which cannot be cropped to a full frame: that exposure gets
one error line, the other its dark.
"""

from __future__ import annotations

import json

from click.testing import CliRunner

import dark_prep_cases as D
import mirage_yamls as M
from mirage_data.cli import main
from mirage_data.darks.programs import DARK_MAP_NAME
from test_prepare import collection, crds_files, no_network, servers  # noqa: F401 (fixtures)


def test_prepare_with_darks(tmp_path, collection, servers):  # noqa: F811
    files, crds, catalog = servers
    # NRCA2_SUB160 lies at columns 1888-2047, rows 0-159: a 168 x 2048 dark holds it
    dark = D.write_linear_dark(tmp_path / "own_darks" / "a2_dark.fits", detector="NRCA2", shape=(168, 2048), nframes=8)
    program = tmp_path / "program"
    M.write_yaml(
        program,
        "sub.yaml",
        aperture="NRCA2_SUB160",
        readpatt="BRIGHT2",
        ngroup=2,
        filter="F200W",
        pupil="CLEAR",
        linearized_darkfile=str(dark),
        output_file="jw_sub_nrca2_uncal.fits",
    )
    M.write_yaml(program, "full.yaml")
    out = tmp_path / "out"
    args = [
        "prepare",
        str(program),
        "--mirage-data",
        str(tmp_path / "md"),
        "--out",
        str(out),
        "--catalog",
        str(collection[0] / "catalog.tsv"),
        "--crds-path",
        str(tmp_path / "crds"),
        "--crds-server",
        crds.url,
        "--mirror",
        files.url,
        "--darks",
        "--dark-seed",
        "7",
    ]
    result = CliRunner().invoke(main, args)
    assert "Traceback" not in result.output, result.output
    product = out / "darks" / "jw_sub_nrca2_uncal_linear_dark_prep_object.fits"
    assert product.is_file(), result.output
    entries = json.loads((out / DARK_MAP_NAME).read_text())
    entry = entries[str(out / "sub.yaml")]
    assert entry["override_dark"] == str(product) and entry["seed"] == 7
    assert f"sim = ImgSim(paramfile={str(out / 'sub.yaml')!r}, override_dark={str(product)!r})" in result.output
    assert "full.yaml: error:" in result.output and result.exit_code == 2
