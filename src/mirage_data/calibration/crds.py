"""CRDS through the real ``crds`` client, for one cache folder at a time: context, best
references, and filling a writable cache (from a read-only shared cache or the server).

The crds client keeps its configuration in the environment and in module state read once
(server URL, cache layout, read-only flag, cached function results). `crds_client` points all
of it at one cache and server for the duration of a ``with`` block and restores everything
afterwards, so a Python caller can use its own cache folder in a process that already used
another one.

Examples
--------
::

    with crds_client("/scratch/crds_cache", SERVERLESS_URL):
        context, why = resolve_context(None)
        names = best_references({"INSTRUME": "NIRCAM", ...}, ["gain"], context)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mirage_data.io.atomic import atomic_path, atomic_write_text

#: A server URL that makes the client refuse every JSON-RPC call at once (crds ``proxy.py``).
SERVERLESS_URL = "https://jwst-crds-serverless-mode.stsci.edu"
DEFAULT_SERVER_URL = "https://jwst-crds.stsci.edu"


def _dropped(key: str) -> bool:
    """Settings a session replaces: cache location, server, context, mode, read-only flag."""
    return "PATH" in key or key in (
        "CRDS_CONTEXT",
        "CRDS_MODE",
        "CRDS_READONLY_CACHE",
        "CRDS_SERVER_URL",
        "CRDS_OBSERVATORY",
        "CRDS_REF_SUBDIR_MODE",
        "CRDS_VERBOSITY",
        "CRDS_CWD",
    )


class CrdsProblem(RuntimeError):
    """CRDS could not answer (no rules for the context, no server, unknown file...)."""


@contextmanager
def crds_client(cache: str | os.PathLike, server_url: str, *, readonly: bool = False) -> Iterator[None]:
    """Point the real crds client at *cache* and *server_url* inside the block; restore after.

    Parameters
    ----------
    cache : path
        The CRDS cache (``CRDS_PATH``).
    server_url : str
        ``CRDS_SERVER_URL``; a URL containing ``serverless`` keeps the client off the network.
    readonly : bool
        Forbid the client to write into *cache* (a shared cache used as a source).
    """
    import crds  # noqa: F401  (slow import; configures itself from the environment)
    from crds.client import api
    from crds.core import config, utils

    state = config.get_crds_state()
    old_server = api.get_crds_server()
    try:
        config.clear_crds_state()  # removes every CRDS_* variable and the cached layout mode
        # keep the user's (and crds' own import-time) settings except where files and rules come from
        os.environ.update({k: str(v) for k, v in state.items() if k.startswith("CRDS_") and not _dropped(k)})
        os.environ.update(
            CRDS_PATH=str(Path(cache).absolute()),
            CRDS_SERVER_URL=server_url,
            CRDS_OBSERVATORY="jwst",
            CRDS_MODE="auto",
        )
        config.set_cache_readonly(readonly)
        api.set_crds_server(server_url)
        utils.clear_function_caches()
        yield
    finally:
        utils.clear_function_caches()
        config.set_crds_state(state)
        for key in [k for k in os.environ if k.startswith("CRDS_") and k not in state]:
            del os.environ[key]
        api.set_crds_server(old_server)


def server_is_reachable() -> bool:
    """True when the configured server answered (inside `crds_client`)."""
    from crds.core import heavy_client

    try:
        return bool(heavy_client.get_config_info("jwst").connected)
    except (Exception, SystemExit):  # crds exits (SystemExit) on a missing cache config
        return False


def resolve_context(explicit: str | None) -> tuple[str, str]:
    """The context to pin, and why (inside `crds_client`).

    Order: *explicit*; ``CRDS_CONTEXT`` of the caller's environment (given as *explicit* by the
    caller); with a server, the build context of the installed jwst (the client's default for
    JWST), else the server's latest context; without one, the latest context of the cache's
    ``server_config``.
    """
    from crds.client import api
    from crds.core import heavy_client

    if explicit:
        if explicit.endswith(".pmap"):
            return explicit, "given"
        try:
            return heavy_client.translate_date_based_context(explicit, "jwst"), f"given as {explicit!r}"
        except Exception as exc:
            raise CrdsProblem(f"cannot translate context {explicit!r} without a server: {exc}") from None
    from crds.core import config

    cfg = Path(config.get_crds_cfgpath("jwst")) / "server_config"
    if "serverless" in api.get_crds_server() and not cfg.is_file():
        raise CrdsProblem(
            f"no CRDS server (serverless) and the cache has no {cfg}; give --crds-from a cache that has one, "
            "or run once with a CRDS server"
        )
    try:
        info = heavy_client.get_config_info("jwst")
    except (Exception, SystemExit):  # crds ends fatal errors (no cache config) with SystemExit
        raise CrdsProblem(
            "no CRDS server answered and the cache has no config/jwst/server_config; give --crds-context and "
            "a cache holding its rules (or --crds-from a cache that has them), or reach a CRDS server"
        ) from None
    latest = str(getattr(info, "latest_context", None) or info.operational_context)
    if info.connected:
        try:
            import jwst

            build = api.get_build_context("jwst")
            return build, f"build context of the installed jwst {jwst.__version__} (server)"
        except Exception:
            return latest, "server's latest context (no build context for the installed jwst)"
    return latest, "latest context in the cache's server_config (no server reachable)"


def best_references(params: dict, reftypes: Iterable[str], context: str) -> dict[str, str]:
    """CRDS's choice for *params* (FITS keywords, as Mirage passes them): reftype -> file name,
    or ``NOT FOUND ...`` text (inside `crds_client`)."""
    import crds

    try:
        found = crds.getrecommendations(dict(params), reftypes=list(reftypes), context=context, observatory="jwst")
    except (Exception, SystemExit) as exc:  # crds ends some fatal errors with SystemExit
        raise CrdsProblem(f"CRDS could not choose references with {context}: {exc}") from None
    return {t: str(found.get(t, "NOT FOUND (no answer)")) for t in reftypes}


def cached_path(name: str) -> Path:
    """Where the cache of the session keeps file *name* (mapping or reference)."""
    from crds.core import config

    return Path(config.locate_file(name, observatory="jwst"))


def _source_file(source: Path, name: str, kind: str) -> Path | None:
    """A file in a read-only cache folder, in either layout (instrument sub-folders or flat)."""
    base = source / kind / "jwst"
    candidates = [base / name]
    if kind == "references":
        parts = name.split("_")
        if len(parts) > 1:
            candidates.insert(0, base / parts[1] / name)
    return next((p for p in candidates if p.is_file()), None)


def _copy_in(src: Path, dest: Path, link: bool) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            tmp = dest.with_name(f".{dest.name}.link-{os.getpid()}")
            tmp.unlink(missing_ok=True)
            os.link(src, tmp)  # same file system: no copy, and the source can stay read-only
            os.replace(tmp, dest)
            return
        except OSError:
            pass  # other file system: copy
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)


def context_mappings(context: str) -> list[str]:
    """All mapping names of *context* (inside `crds_client` on a cache holding them)."""
    import crds

    return sorted(crds.get_cached_mapping(context).mapping_names())


def ensure_rules(context: str, source: Path | None, link: bool) -> str:
    """Make the writable cache of the session hold *context*'s rules; says where they came from.

    From the cache itself, else from *source* (a read-only cache, the closure copied), else
    from the server (``dump_mappings``).
    """
    from crds.client import api

    if cached_path(context).is_file():
        return "cache"
    if source is not None and _source_file(source, context, "mappings") is not None:
        with crds_client(source, SERVERLESS_URL, readonly=True):
            names = context_mappings(context)
        for name in names:
            src = _source_file(source, name, "mappings")
            if src is None:
                raise CrdsProblem(f"{source} has {context} but not its mapping {name}")
            dest = cached_path(name)
            if not dest.is_file():
                _copy_in(src, dest, link)
        return f"copied from {source}"
    try:
        api.dump_mappings(context)
    except (Exception, SystemExit) as exc:
        raise CrdsProblem(f"the rules of {context} are not in the cache and could not be fetched: {exc}") from None
    return "server"


@dataclass
class SyncResult:
    """Where each reference file now is, and where it came from (cache, copied, linked, server)."""

    paths: dict[str, Path]
    origin: dict[str, str]
    bytes_fetched: int = 0


def ensure_references(names: Iterable[str], context: str, source: Path | None, link: bool) -> SyncResult:
    """Make the session's cache hold *names*: already there, copied/linked from *source*, or
    downloaded by the client (verified by it against the server's size and sha1)."""
    from crds.client import api

    result = SyncResult({}, {})
    download = []
    for name in sorted(set(names)):
        dest = cached_path(name)
        result.paths[name] = dest
        if dest.is_file():
            result.origin[name] = "cache"
            continue
        src = _source_file(source, name, "references") if source is not None else None
        if src is not None:
            _copy_in(src, dest, link)
            result.origin[name] = f"{'linked' if link else 'copied'} from {source}"
        else:
            download.append(name)
    if download:
        try:
            paths, _, n_bytes = api.FileCacher(context, raise_exceptions=True).get_local_files(list(download))
        except (Exception, SystemExit) as exc:
            raise CrdsProblem(f"could not fetch {', '.join(download)} from the CRDS server: {exc}") from None
        result.bytes_fetched += n_bytes
        for name in download:
            result.paths[name] = Path(paths[name])
            result.origin[name] = "server"
    return result


def ensure_server_config(cache: Path, context: str, source: Path | None) -> str:
    """Make sure *cache* has ``config/jwst/server_config`` (without it an offline client stops with
    "CRDS server connection and cache load FAILED"). Copied from *source* when it has one, else
    written naming *context*. Returns what was done."""
    target = Path(cache) / "config" / "jwst" / "server_config"
    if target.is_file():
        return "present"
    original = Path(source) / "config" / "jwst" / "server_config" if source is not None else None
    if original is not None and original.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            shutil.copyfile(original, tmp)
        return f"copied from {source}"
    info = {
        "observatory": "jwst",
        "operational_context": context,
        "edit_context": context,
        "latest_context": context,
        "bad_files": "",
        "bad_files_list": [],
        "force_remote_mode": False,
        "crds_version": {"str": "0.0.0"},
        "reference_url": "none",
        "mapping_url": "none",
        "last_synced": "written by mirage-data prepare",
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, repr(info))
    return "written"
