"""Reading results from a local bucket-shaped folder or from GCS (the emulator too).

``STORAGE_EMULATOR_HOST`` is honoured the way google-cloud-storage does: when it is set, the
client talks to that host with anonymous credentials.
"""

from __future__ import annotations

import datetime as dt
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


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
                        updated=dt.datetime.fromtimestamp(st.st_mtime, tz=dt.timezone.utc),
                        generation=st.st_mtime_ns,
                        size=st.st_size,
                        url=path.as_uri(),
                    )
                )
        return out

    def read(self, info: ObjectInfo) -> bytes:
        return (self.root / info.name).read_bytes()


class GcsResults:
    """``gs://bucket[/prefix]``: object names are relative to the prefix."""

    def __init__(self, bucket: str, prefix: str = "", client=None):
        self.client = client or gcs_client()
        self.bucket = self.client.bucket(bucket)
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.description = f"gs://{bucket}/{self.prefix}"

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


def open_results(src: str, client=None) -> ResultsSource:
    """``gs://bucket[/prefix]`` or a local folder."""
    if src.startswith("gs://"):
        bucket, _, prefix = src[len("gs://") :].partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {src!r}")
        return GcsResults(bucket, prefix, client=client)
    return LocalResults(src)
