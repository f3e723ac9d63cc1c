"""Reading results from a local bucket-shaped folder or from GCS (the emulator too).

``STORAGE_EMULATOR_HOST`` is honoured the way google-cloud-storage does: when it is set, the
client talks to that host with anonymous credentials.

Input bounds (environment settings; a malformed value is a one-line configuration error), checked
from the listing's ``size`` before anything is downloaded (:func:`check_sizes`) and again while
reading a local file (it may grow after the listing; a GCS read is pinned to the listed generation):

* ``PARTYBAL_MAX_FILE_BYTES`` (default 768 MiB): one results file;
* ``PARTYBAL_MAX_EXPERIMENT_BYTES`` (default 1.5 GiB): all results files of one experiment;
* ``PARTYBAL_MAX_ROWS`` (default 5,000,000): statistics rows of one experiment, counted while the
  files are streamed (rows of a few bytes would otherwise fit many more under the byte limits);
* metadata and errors files: at most ``SIDE_FILE_BYTES`` (32 MiB; Jetstream writes kilobytes),
  read whole.

With these defaults the render job stays within its default 4 GiB of memory with headroom; the
bound and the measurements are in docs/performance.md ("Memory bound").
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import layout
from .errors import InputError
from .settings import int_setting

DEFAULT_MAX_FILE_BYTES = 768 * 1024 * 1024  # twice the real-size daily file (≈ 270 MB) and more
DEFAULT_MAX_EXPERIMENT_BYTES = 1536 * 1024 * 1024
DEFAULT_MAX_ROWS = 5_000_000  # about 5× a real-size experiment (≈ 0.95 M rows)
SIDE_FILE_BYTES = 32 * 1024 * 1024  # a metadata or errors file (not a setting)


@dataclass(frozen=True)
class SizeLimits:
    file_bytes: int = DEFAULT_MAX_FILE_BYTES
    experiment_bytes: int = DEFAULT_MAX_EXPERIMENT_BYTES
    rows: int = DEFAULT_MAX_ROWS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SizeLimits:
        environ = os.environ if environ is None else environ
        return cls(
            int_setting(environ, "PARTYBAL_MAX_FILE_BYTES", DEFAULT_MAX_FILE_BYTES, minimum=1),
            int_setting(environ, "PARTYBAL_MAX_EXPERIMENT_BYTES", DEFAULT_MAX_EXPERIMENT_BYTES, minimum=1),
            int_setting(environ, "PARTYBAL_MAX_ROWS", DEFAULT_MAX_ROWS, minimum=1),
        )


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB ({n} bytes)" if n >= 1024 * 1024 else f"{n} bytes"


def check_sizes(infos, limits: SizeLimits | None = None, side_files: frozenset[str] = frozenset()) -> None:
    """InputError naming the file (or the experiment's total) and the limit, before any download.
    ``side_files``: names of metadata and errors files (limit ``SIDE_FILE_BYTES``)."""
    limits = limits or SizeLimits.from_env()
    total = 0
    for info in infos:
        if info.name in side_files and info.size > SIDE_FILE_BYTES:
            raise InputError(
                info.name,
                f"file is {_mib(info.size)}, over the limit of {_mib(SIDE_FILE_BYTES)} for a metadata or errors file",
            )
        if info.size > limits.file_bytes:
            raise InputError(
                info.name,
                f"file is {_mib(info.size)}, over the limit of {_mib(limits.file_bytes)} per file "
                "(PARTYBAL_MAX_FILE_BYTES)",
            )
        total += info.size
    if total > limits.experiment_bytes:
        raise InputError(
            "results",
            f"the experiment's files are {_mib(total)} together, over the limit of {_mib(limits.experiment_bytes)} "
            "per experiment (PARTYBAL_MAX_EXPERIMENT_BYTES)",
        )


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    updated: dt.datetime
    generation: int
    size: int
    url: str  # where a reader of the report can open the source file


class ResultsSource(Protocol):
    description: str

    def list(self, prefix: str) -> list[ObjectInfo]: ...

    def read(self, info: ObjectInfo) -> bytes: ...

    # Optional: ``open(info)`` -> a binary file object read in chunks (:func:`open_object`).


class LimitedReader:
    """A binary file object that fails with the file's name and the limit once more than
    ``limit`` bytes have been read from it (a file that grew after it was listed)."""

    def __init__(self, fh, name: str, limit: int, which: str = "per file (PARTYBAL_MAX_FILE_BYTES)"):
        self._fh, self.name, self._limit, self._count, self._which = fh, name, limit, 0, which

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:  # the rest, in chunks (a read of "up to the limit" would reserve the limit)
            parts = []
            while part := self.read(1024 * 1024):
                parts.append(part)
            return b"".join(parts)
        data = self._fh.read(n)
        self._count += len(data)
        if self._count > self._limit:
            raise InputError(
                self.name, f"file grew over the limit of {_mib(self._limit)} {self._which} after it was listed"
            )
        return data

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> LimitedReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_object(source: ResultsSource, info: ObjectInfo, limit: int | None = None):
    """A binary file object over one results object, read in chunks, never past ``limit`` (the
    per-file limit by default); a source without ``open`` is read whole (test doubles)."""
    import io

    opener = getattr(source, "open", None)
    fh = opener(info) if opener is not None else io.BytesIO(source.read(info))
    if limit is None:
        return LimitedReader(fh, info.name, SizeLimits.from_env().file_bytes)
    return LimitedReader(fh, info.name, limit, "for a metadata or errors file")


def gcs_client(project: str | None = None):
    """A storage client; anonymous against the emulator when STORAGE_EMULATOR_HOST is set."""
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=project or os.environ.get("GOOGLE_CLOUD_PROJECT", "partybal-local"),
            credentials=AnonymousCredentials(),
        )
    return storage.Client(project=project)


def file_time(path: Path, mtime: float) -> dt.datetime:
    """A local file's modification time as the object's ``updated`` time, or an input error."""
    try:
        return dt.datetime.fromtimestamp(mtime, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise InputError(
            str(path), f"its modification time ({mtime:.0f} s since 1970) is not a date: `touch` the file"
        ) from None


class LocalResults:
    """A folder shaped like the results bucket."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.description = str(self.root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"results folder {self.root} does not exist")

    def list(self, prefix: str) -> list[ObjectInfo]:
        folder, _, start = prefix.rpartition("/")
        base = self.root / folder if folder else self.root
        if not base.is_dir():
            return []
        out = []
        for path in sorted(base.iterdir()):
            if path.is_file() and path.name.startswith(start):
                st = path.stat()
                name = path.relative_to(self.root).as_posix()
                out.append(
                    ObjectInfo(
                        name=name,
                        updated=file_time(path, st.st_mtime),
                        generation=st.st_mtime_ns,
                        size=st.st_size,
                        url=path.as_uri(),
                    )
                )
        return out

    def read(self, info: ObjectInfo) -> bytes:
        with open_object(self, info) as fh:  # never more than the limit, whatever the file grew to
            return fh.read()

    def open(self, info: ObjectInfo):
        """The file for reading in chunks (wrapped in :class:`LimitedReader` by :func:`open_object`)."""
        return (self.root / info.name).open("rb")


class GcsResults:
    """``gs://bucket[/prefix]``: object names are relative to the prefix."""

    def __init__(self, bucket: str, prefix: str = "", client=None):
        self.client = client or gcs_client()
        self.bucket = self.client.bucket(bucket)
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.description = layout.gs_url(bucket, self.prefix)

    def _url(self, full_name: str) -> str:
        quoted = urllib.parse.quote(full_name, safe="")
        host = os.environ.get("STORAGE_EMULATOR_HOST")
        if host:
            return f"{host.rstrip('/')}/storage/v1/b/{self.bucket.name}/o/{quoted}?alt=media"
        return f"https://storage.cloud.google.com/{self.bucket.name}/{urllib.parse.quote(full_name)}"

    def list(self, prefix: str) -> list[ObjectInfo]:
        out = []
        for blob in self.client.list_blobs(
            self.bucket, prefix=self.prefix + prefix, fields="items(name,updated,generation,size),nextPageToken"
        ):
            out.append(
                ObjectInfo(
                    name=blob.name[len(self.prefix) :],
                    updated=blob.updated,
                    generation=int(blob.generation),
                    size=int(blob.size or 0),
                    url=self._url(blob.name),
                )
            )
        return out

    def read(self, info: ObjectInfo) -> bytes:
        blob = self.bucket.blob(self.prefix + info.name, generation=info.generation)
        return blob.download_as_bytes()

    def open(self, info: ObjectInfo):
        """The listed generation, downloaded in ranged chunks of 8 MiB as it is read."""
        blob = self.bucket.blob(self.prefix + info.name, generation=info.generation)
        return blob.open("rb", chunk_size=8 * 1024 * 1024)


def open_results(src: str, client=None) -> ResultsSource:
    """``gs://bucket[/prefix]`` or a local folder."""
    if layout.is_gs_url(src):
        bucket, prefix = layout.parse_gs_url(src)  # ValueError without a bucket
        return GcsResults(bucket, prefix, client=client)
    return LocalResults(src)


def metadata_json(metadata: Any, key: str) -> dict[str, Any] | None:
    """The JSON object partybal keeps under ``key`` in an object's custom metadata (a listing with
    ``fields=items(metadata)`` returns it); None when missing, not JSON or not an object."""
    if not isinstance(metadata, dict) or key not in metadata:
        return None
    try:
        value = json.loads(metadata[key])
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def list_results(source: ResultsSource, prefix: str = "") -> list[ObjectInfo]:
    """Every object of the three results folders under ``prefix`` (:func:`layout.results_listing_prefixes`;
    temp and junk names included: :func:`layout.parse_results_name` tells them apart). One listing
    of names, generations and update times: nothing is downloaded."""
    return [info for folder in layout.results_listing_prefixes(prefix) for info in source.list(folder)]


def list_experiment_objects(
    source: ResultsSource, fslug: str
) -> tuple[list[tuple[layout.ResultBlob, ObjectInfo]], list[tuple[str, str]]]:
    """The final results objects of experiment ``fslug`` (in :func:`list_experiment_files`'s
    shape), and the names in its namespace that are skipped, with the reason.

    A statistics name that reads as two experiments (``study_preenrollment_weekly``: ``study``'s
    pre-enrollment weekly or ``study-preenrollment``'s weekly file) is decided by the listing — the
    experiment whose other files exist (:func:`partybal.layout.resolve_listing`); the other
    reading's experiment is listed too for that. Undecidable names are skipped with the reason."""

    def listing(slugs) -> dict[str, tuple[layout.ResultBlob, ObjectInfo]]:
        out = {}
        for s in slugs:
            for kind in layout.Kind:
                for info in source.list(layout.results_listing_prefix(kind, s)):
                    try:
                        out[info.name] = (layout.parse_results_name(info.name, allowed_prefixes=("",)), info)
                    except layout.Ignored as why:
                        if not layout.is_temp_name(info.name) and s == fslug:
                            skipped.append((info.name, str(why)))
        return out

    skipped: list[tuple[str, str]] = []
    listed = listing([fslug])
    mine = [b for b, _ in listed.values() if fslug in {s for s, _ in b.readings}]
    others = sorted({s for b in mine if b.alternatives for s, _ in b.readings} - {fslug})
    if others:
        listed.update({k: v for k, v in listing(others).items() if k not in listed})
    blobs, ambiguous = layout.resolve_listing(b for b, _ in listed.values())
    found = [(b, listed[b.name][1]) for b in blobs if b.file_slug == fslug]
    for name, why in ambiguous:
        if fslug in {s for s, _ in listed[name][0].readings}:
            skipped.append((name, why))
            logging.getLogger(__name__).warning(
                "ignored results object: %s: %s", name, why, extra={"fields": {"slug": fslug}}
            )
    kinds = list(layout.Kind)
    return sorted(found, key=lambda x: (kinds.index(x[0].kind), x[0].name)), skipped
