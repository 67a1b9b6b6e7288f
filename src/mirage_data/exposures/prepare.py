"""``prepare``: everything a set of Mirage input yaml files needs, and nothing more, ready offline.

Reads the yaml files, works out each exposure's bill of materials and problems (`bill`), chooses
CRDS references with Mirage's own query parameters and a pinned context, fetches only what is
missing (collection files through the download engine, CRDS files through the crds client or
from a shared read-only cache), precomputes inverted IPC kernels, writes one resolved yaml per
exposure into OUTDIR and the environment lines for running offline.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mirage_data.calibration import crds as crds_io
from mirage_data.collection.catalog import Catalog, load_catalog
from mirage_data.collection.selection import Selection
from mirage_data.io.atomic import atomic_path, atomic_write_text
from mirage_data.progress import QuietProgress
from mirage_data.units import format_size

from .bill import ERROR, ExposureBill, Planner, Problem
from .fetch import fetch_entries, writable
from .ipc import write_inverted_kernel
from .yaml_input import ExposureError, find_yaml_files, read_exposure

STATE_NAME = ".mirage-data-prepare.json"
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's dumper: ~10x faster for 500 files
IPC_FOLDER = "ipc_kernels"


@dataclass
class PrepareReport:
    """What `prepare` found and did (``describe()`` gives the text the command prints)."""

    bills: list[ExposureBill]
    unreadable: list[tuple[Path, str]]
    mirage_data: Path
    fetch_into: Path | None
    to_fetch: list[str]
    bytes_to_fetch: int
    default_collection_bytes: int
    entry_sizes: dict[str, int]
    dry_run: bool
    crds_path: Path | None = None
    crds_context: str | None = None
    crds_context_reason: str = ""
    crds_names: dict[str, str] = field(default_factory=dict)  # name -> origin or "to fetch"
    crds_problem: str | None = None
    fetched: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    bytes_fetched: int = 0
    written: list[Path] = field(default_factory=list)
    env_lines: list[str] = field(default_factory=list)
    where: dict[str, str] = field(default_factory=dict)  # collection file -> folder it is used from

    @property
    def problems(self) -> list[tuple[str, Problem]]:
        out = [(str(p), Problem(ERROR, msg)) for p, msg in self.unreadable]
        for b in self.bills:
            out += [(b.exposure.name, pr) for pr in b.problems]
        return out

    @property
    def exit_status(self) -> int:
        """0 all fine; 1 files failed to fetch; 2 bad input (some exposure cannot run)."""
        if self.failed:
            return 1
        return 2 if any(p.severity == ERROR for _, p in self.problems) or self.crds_problem else 0

    def describe(self) -> str:
        lines = []
        for b in self.bills:
            e = b.exposure
            missing = [f for f in b.files if f in self.to_fetch]
            size = sum(self.entry_sizes.get(f, 0) for f in missing)
            lines.append(
                f"{e.name}: {e.instrument} {e.array_name} {e.filter}/{e.pupil} {e.readpatt} ngroup={e.ngroup} "
                f"nint={e.nint}: {len(b.files)} collection files ({len(missing)} to fetch, {format_size(size)}), "
                f"{len(b.crds)} CRDS references"
            )
            failed = {r for r, _ in self.failed}
            for f in b.files:
                if f in failed:
                    state = "FAILED "
                elif f in self.to_fetch:
                    state = "fetch  " if self.dry_run else "fetched"
                else:
                    state = "have   "
                lines.append(f"    {state} {f}  [{self.where.get(f, '')}]")
            for other in b.other_needs:
                lines.append(f"    needs from elsewhere: {other}")
        for where, problem in self.problems:
            lines.append(f"{where}: {problem.severity}: {problem.message}")
        if self.crds_problem:
            lines.append(f"CRDS: error: {self.crds_problem}")
        n_ok = sum(b.ok for b in self.bills)
        lines.append(
            f"{len(self.bills) + len(self.unreadable)} yaml files, {n_ok} ready to prepare; "
            f"{len(self.to_fetch)} collection files to fetch, {format_size(self.bytes_to_fetch)} of the "
            f"{format_size(self.default_collection_bytes)} default collection"
            + (f" into {self.fetch_into}" if self.fetch_into and self.to_fetch else "")
        )
        if self.crds_context:
            todo = sum(1 for o in self.crds_names.values() if o == "to fetch")
            lines.append(
                f"CRDS: context {self.crds_context} ({self.crds_context_reason}); {len(self.crds_names)} reference "
                f"files, {todo} to fetch, cache {self.crds_path}"
            )
            for name, origin in sorted(self.crds_names.items()):
                lines.append(f"    {name}: {origin}")
        if not self.dry_run:
            lines.append(
                f"fetched {len(self.fetched)} files ({format_size(self.bytes_fetched)}), {len(self.failed)} failed; "
                f"wrote {len(self.written)} resolved yaml files"
            )
            for rp, err in self.failed:
                lines.append(f"    failed {rp}: {err}")
        if self.env_lines:
            lines.append("Run Mirage offline with (sh/bash/zsh, then csh/tcsh):")
            lines += [f"  {line}" for line in self.env_lines]
        return "\n".join(lines)


def _state(out: Path) -> dict:
    try:
        return json.loads((out / STATE_NAME).read_text("utf-8"))
    except (OSError, ValueError):
        return {}


def env_lines(mirage_data: Path, crds_path: Path, context: str, raw_darks: bool) -> list[str]:
    """sh then csh lines for running Mirage with no network."""
    values = [
        ("MIRAGE_DATA", str(mirage_data)),
        ("CRDS_PATH", str(crds_path)),
        ("CRDS_SERVER_URL", crds_io.SERVERLESS_URL),
        ("CRDS_CONTEXT", context),
    ]
    if raw_darks:
        values.append(("STPIPE_DISABLE_CRDS_STEPPARS", "true"))
    return [f'export {k}="{v}"' for k, v in values] + [f'setenv {k} "{v}"' for k, v in values]


def prepare(
    inputs: list[str | os.PathLike],
    mirage_data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    fetch_into: str | os.PathLike | None = None,
    dry_run: bool = False,
    mirror: str | os.PathLike | None = None,
    catalog: Catalog | str | os.PathLike | None = None,
    crds_path: str | os.PathLike | None = None,
    crds_context: str | None = None,
    crds_from: str | os.PathLike | None = None,
    crds_server: str | None = None,
    crds_date: str | None = None,
    link: bool = False,
    jobs: int = 4,
    connections: int = 4,
    wait: bool = True,
    progress: QuietProgress | None = None,
    options=None,
) -> PrepareReport:
    """Prepare the reference data of Mirage input yaml files (see the module docstring).

    Parameters
    ----------
    inputs : list of path
        yaml files and folders of yaml files.
    mirage_data : path
        ``MIRAGE_DATA``; may be a read-only shared copy (then nothing is written into it).
    out : path
        Folder for the resolved yaml copies, inverted IPC kernels and the environment lines.
    fetch_into : path, optional
        Writable folder (laid out like ``MIRAGE_DATA``) for missing collection files; default
        *mirage_data* when it is writable.
    dry_run : bool
        Report the bill and the problems; fetch and write nothing.
    crds_path : path, optional
        Writable CRDS cache (default ``$CRDS_PATH``, else ``~/crds_cache``).
    crds_context : str, optional
        Context to pin (default ``$CRDS_CONTEXT``, else the one recorded by an earlier run in
        *out*, else the one the client resolves now).
    crds_from : path, optional
        A read-only CRDS cache to copy (or with *link*, hard-link) rules and references from.
    crds_server : str, optional
        CRDS server URL (default ``$CRDS_SERVER_URL``, else the JWST server).
    crds_date : str, optional
        DATE-OBS of the CRDS queries (``YYYY-MM-DD``; default: recorded, else today).

    Returns
    -------
    PrepareReport
    """
    progress = progress or QuietProgress()
    out = Path(os.path.abspath(out))
    mirage_data = Path(os.path.abspath(os.path.expanduser(mirage_data)))
    if not isinstance(catalog, Catalog):
        catalog = load_catalog(catalog)
    if fetch_into is not None:
        fetch_root: Path | None = Path(os.path.abspath(fetch_into))
    elif not dry_run and writable(mirage_data):
        fetch_root = mirage_data
    elif dry_run and (not mirage_data.exists() or os.access(mirage_data, os.W_OK)):
        fetch_root = mirage_data
    else:
        fetch_root = None
    state = _state(out)
    now = datetime.datetime.now(datetime.UTC)
    date = crds_date or state.get("crds_date") or now.date().isoformat()
    time = state.get("crds_time", "00:00:00") if not crds_date else "00:00:00"

    files, bad_inputs = find_yaml_files(inputs)
    unreadable = [(p, msg) for p, msg in bad_inputs]
    exposures = []
    for f in files:
        try:
            exposures.append(read_exposure(f))
        except ExposureError as exc:
            unreadable.append((f, str(exc)))
    planner = Planner(mirage_data, fetch_root, catalog, date, time)
    bills = [planner.plan(e) for e in exposures]
    default_total = sum(e.expected_size for e in Selection().files(catalog))
    sizes = {e.relative_path: e.expected_size for e in catalog}
    to_fetch = sorted(planner.to_fetch)
    report = PrepareReport(
        bills=bills,
        unreadable=unreadable,
        mirage_data=mirage_data,
        fetch_into=fetch_root,
        to_fetch=to_fetch,
        bytes_to_fetch=sum(sizes[r] for r in to_fetch),
        default_collection_bytes=default_total,
        entry_sizes=sizes,
        dry_run=dry_run,
    )

    for b in bills:  # where each collection file is used from (the report says so)
        for rp in b.files:
            if rp in report.where:
                continue
            entry = catalog.get(rp)
            root = planner.entry_state(entry)[1] if entry.is_dark else planner.archive_installed(entry)
            if rp in planner.to_fetch:
                root = fetch_root
            elif root is None:  # found by its member files, not by an inventory record
                used = [f for f in (b.psf_folder, b.cosmic_ray_folder, b.dark) if f is not None]
                root = next((r for r in planner.roots for f in used if str(f).startswith(str(r) + os.sep)), None)
            report.where[rp] = str(root) if root is not None else "?"

    # CRDS: choose with a pinned context, then fill the writable cache
    crds_refs: dict[tuple, dict[str, str]] = {}
    crds_paths: dict[str, Path] = {}
    if planner.queries:
        cache = Path(os.path.abspath(os.path.expanduser(crds_path or os.environ.get("CRDS_PATH") or "~/crds_cache")))
        source = Path(os.path.abspath(crds_from)) if crds_from else None
        server = crds_server or os.environ.get("CRDS_SERVER_URL") or crds_io.DEFAULT_SERVER_URL
        explicit = crds_context or os.environ.get("CRDS_CONTEXT") or state.get("crds_context")
        report.crds_path = cache
        try:
            if source is not None and (source / "config" / "jwst" / "server_config").is_file() and not dry_run:
                crds_io.ensure_server_config(cache, "", source)  # the shared cache's view of the server
            # a dry run with a shared cache and no own cache yet reads the shared one, read-only
            from_source = dry_run and source is not None and not (cache / "config" / "jwst" / "server_config").is_file()
            with crds_io.crds_client(source if from_source else cache, server, readonly=from_source):
                context, why = crds_io.resolve_context(explicit)
                if not crds_context and not os.environ.get("CRDS_CONTEXT") and state.get("crds_context"):
                    why = f"recorded by the earlier run in {out}"
                report.crds_context, report.crds_context_reason = context, why
                crds_io.ensure_rules(context, source, link)
                wanted: dict[tuple, set[str]] = {}
                for b in bills:
                    for qkey, reftype in b.crds.values():
                        wanted.setdefault(qkey, set()).add(reftype)
                for qkey, reftypes in wanted.items():
                    crds_refs[qkey] = crds_io.best_references(planner.queries[qkey], sorted(reftypes), context)
                names = {n for refs in crds_refs.values() for n in refs.values() if "NOT FOUND" not in n.upper()}
                for name in names:
                    if not from_source and crds_io.cached_path(name).is_file():
                        report.crds_names[name] = "in cache"
                    elif source is not None and crds_io._source_file(source, name, "references"):
                        report.crds_names[name] = f"{'link' if link else 'copy'} from {source}"
                    else:
                        report.crds_names[name] = "to fetch"
                if not dry_run:
                    synced = crds_io.ensure_references(names, context, source, link)
                    report.crds_names.update(synced.origin)
                    crds_io.ensure_server_config(cache, context, source)
                    crds_paths = synced.paths
        except crds_io.CrdsProblem as exc:
            report.crds_problem = str(exc)
        for b in bills:
            for key, (qkey, reftype) in b.crds.items():
                if report.crds_problem:
                    b.problem(f"Reffiles:{key}: CRDS reference not resolved (see the CRDS line)")
                    break
                name = crds_refs[qkey][reftype]
                if "NOT FOUND" in name.upper():
                    b.problem(f"Reffiles:{key}: CRDS has no {reftype} file ({name}); Mirage would stop; set it to none")

    if dry_run:
        return report

    # collection files
    if to_fetch:
        if fetch_root is None:
            for b in bills:
                if any(f in planner.to_fetch for f in b.files):
                    b.problem(f"files missing and {mirage_data} is read-only; give --fetch-into DIR")
        else:
            fetched = fetch_entries(
                fetch_root,
                [catalog.get(r) for r in to_fetch],
                catalog,
                mirror=mirror,
                options=options,
                jobs=jobs,
                connections=connections,
                progress=progress,
                wait=wait,
            )
            report.fetched = [r.entry.relative_path for r in fetched.results if r.ok]
            report.failed = [(r.entry.relative_path, str(r.error)) for r in fetched.failed]
            report.bytes_fetched = fetched.bytes_fetched
    failed = {r for r, _ in report.failed}
    for b in bills:
        lost = [f for f in b.files if f in failed]
        if lost:
            b.problem(f"not prepared: {len(lost)} collection file(s) failed to fetch")
            continue
        for check in b.after_fetch:
            check()
        for src, dest in b.links:
            _link(src, dest)

    # inverted IPC kernels and resolved yaml files
    kernels: dict[Path, Path] = {}
    raw_darks = False
    for b in bills:
        if not b.ok or report.crds_problem:
            continue
        params = copy.deepcopy(b.exposure.params)
        ref = params["Reffiles"]
        for key, (qkey, reftype) in b.crds.items():
            ref[key] = str(crds_paths[crds_refs[qkey][reftype]])
        if "ipc" in b.crds:
            ipc = Path(ref["ipc"])
            if ipc not in kernels:
                kernels[ipc] = write_inverted_kernel(
                    ipc, out / IPC_FOLDER, b.exposure.array_name.split("_")[0], b.exposure.instrument.upper()
                )
            ref["ipc"] = str(kernels[ipc])
            ref["invertIPC"] = False
        if b.dark is not None:
            ref[b.dark_key] = str(b.dark)
            raw_darks = raw_darks or b.dark_key == "dark"
        if b.psf_folder is not None:
            params["simSignals"]["psfpath"] = str(b.psf_folder)
        if b.cosmic_ray_folder is not None:
            params["cosmicRay"]["path"] = str(b.cosmic_ray_folder)
        target = out / b.exposure.name
        try:
            with atomic_path(target) as tmp:
                tmp.write_text(yaml.dump(params, Dumper=_Dumper, sort_keys=False, default_flow_style=False), "utf-8")
        except OSError as exc:
            b.problem(f"cannot write the resolved yaml {target}: {exc.strerror or exc}")
            continue
        report.written.append(target)

    if report.crds_context:
        report.env_lines = env_lines(mirage_data, report.crds_path, report.crds_context, raw_darks)
        half = len(report.env_lines) // 2
        atomic_write_text(out / "mirage_offline.sh", "\n".join(report.env_lines[:half]) + "\n")
        atomic_write_text(out / "mirage_offline.csh", "\n".join(report.env_lines[half:]) + "\n")
        record = {"crds_context": report.crds_context, "crds_date": date, "crds_time": time}
        atomic_write_text(out / STATE_NAME, json.dumps(record, indent=1))
    return report


def _link(src: Path, dest: Path) -> None:
    """Make *dest* a symbolic link to *src* (so one folder holds what a Mirage glob needs)."""
    if dest.exists():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.link-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(src, tmp)
    os.replace(tmp, dest)
