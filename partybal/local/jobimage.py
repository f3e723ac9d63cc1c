"""Run the render job from its container image on this machine (the production container path).

Cloud Run runs ``renderer_image/Dockerfile``'s image; locally, ``make image-local`` builds it with
podman. Starting containers needs an OCI runtime, which these machines refuse (setting rlimits is
not permitted), so an execution here is the image's own entrypoint, environment, working directory
and user, run in a fresh copy of the image's filesystem:

    podman create IMAGE            a container: a writable layer over the image, as on Cloud Run
    podman mount CONTAINER         its root filesystem
    unshare --mount --pid --fork --mount-proc=ROOT/proc
        (private /dev with null, zero, random, urandom, tty and shm; the host's resolv.conf)
        chroot --userspec=UID:GID ROOT  env -i IMAGE_ENV JOB_ENV  ENTRYPOINT
    podman umount / podman rm      the copy is discarded

on the host network (the emulators listen on loopback). The job sees only the image's environment
plus the variables it is given: nothing of the host's. Needs root (podman storage, chroot).

``partybal local up --job-image IMAGE`` (or ``PARTYBAL_JOB_IMAGE``) makes the Cloud Run stand-in
run every execution this way; alone: ``python -m partybal.local.jobimage --image IMAGE --env NAME …``
runs the entrypoint with the named variables taken from its own environment.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

PODMAN = os.environ.get("PODMAN", "podman")
STORAGE = os.environ.get("PARTYBAL_PODMAN_STORAGE", "")  # as scripts/image-local.sh: e.g. vfs
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
LABEL = "partybal.local.jobimage"  # on every container this module creates (for clean-up by hand)

# Runs as root inside the new mount and PID namespaces, before chroot: "$1" is the root, the rest
# is the chroot command line.
_SETUP = r"""
set -eu
root=$1; shift
mount -t tmpfs -o mode=0755,nosuid,size=64k partybal-dev "$root/dev"
for d in DEVICES; do : >"$root/dev/$d"; mount --bind "/dev/$d" "$root/dev/$d"; done
mkdir -p "$root/dev/shm" "$root/dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev partybal-shm "$root/dev/shm"
ln -s /proc/self/fd "$root/dev/fd"; ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"; ln -s /proc/self/fd/2 "$root/dev/stderr"
if [ -f /etc/resolv.conf ]; then
  [ -L "$root/etc/resolv.conf" ] && rm -f "$root/etc/resolv.conf"
  [ -e "$root/etc/resolv.conf" ] || : >"$root/etc/resolv.conf"
  mount --bind -o ro /etc/resolv.conf "$root/etc/resolv.conf"
fi
exec chroot "$@"
""".replace("DEVICES", " ".join(DEVICES))


class ImageError(ConfigError, RuntimeError):
    """The image cannot be run here (one line, says what to do)."""


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: dict[str, str]
    workdir: str
    user: str

    @property
    def argv(self) -> list[str]:
        return [*self.entrypoint, *self.cmd]


def _podman_run(*args: str) -> subprocess.CompletedProcess:
    if shutil.which(PODMAN) is None:
        raise ImageError(f"{PODMAN} is not installed (apt-get install podman; make setup does)")
    storage = ["--storage-driver", STORAGE] if STORAGE else []
    return subprocess.run([PODMAN, *storage, *args], capture_output=True, text=True)


def _podman(*args: str, check: bool = True) -> str:
    proc = _podman_run(*args)
    if check and proc.returncode != 0:
        raise ImageError(f"podman {args[0]} failed: {' '.join(proc.stderr.split())[:400]}")
    return proc.stdout.strip()


def image_config(image: str) -> ImageConfig:
    raw = json.loads(_podman("image", "inspect", image))[0]
    cfg = raw.get("Config") or {}
    env = dict(item.split("=", 1) for item in cfg.get("Env") or [] if "=" in item)
    return ImageConfig(
        entrypoint=tuple(cfg.get("Entrypoint") or ()),
        cmd=tuple(cfg.get("Cmd") or ()),
        env=env,
        workdir=cfg.get("WorkingDir") or "/",
        user=cfg.get("User") or "0",
    )


def check_image(image: str) -> ImageConfig:
    """Can ``image`` run here? Its config, or :class:`ImageError` saying what to do."""
    if os.geteuid() != 0:
        raise ImageError("running the job image needs root (podman storage, chroot)")
    if _podman_run("image", "exists", image).returncode != 0:
        raise ImageError(f"image {image} not found in podman's storage: build it with make image-local")
    config = image_config(image)
    if not config.argv:
        raise ImageError(f"image {image} has no entrypoint")
    _userspec(config.user)
    return config


def _userspec(user: str) -> str:
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise ImageError(f"image user {user!r}: only numeric uid[:gid] is supported here")
    return f"{uid}:{gid or uid}"


@contextlib.contextmanager
def mounted(image: str) -> Iterator[Path]:
    """A fresh container of ``image`` (not started), its root filesystem mounted; removed after."""
    if os.geteuid() != 0:
        raise ImageError("running the job image needs root (podman storage, chroot)")
    name = f"partybal-job-{uuid.uuid4().hex[:12]}"
    _podman("create", "--name", name, "--label", f"{LABEL}=1", "--network", "host", image)
    try:
        root = Path(_podman("mount", name))
        try:
            yield root
        finally:
            _podman("umount", name, check=False)
    finally:
        _podman("rm", "--force", name, check=False)


def command_in(
    root: Path, argv: Sequence[str], env: Mapping[str, str], user: str = "0", workdir: str = "/"
) -> list[str]:
    """The host command line running ``argv`` in the mounted filesystem ``root``: own mount and
    PID namespaces, ``user`` (uid[:gid]), exactly ``env``, from ``workdir``."""
    for tool in ("unshare", "chroot"):
        if shutil.which(tool) is None:
            raise ImageError(f"{tool} is not installed (util-linux / coreutils)")
    assigns = [f"{k}={v}" for k, v in env.items()]
    chroot = ["--userspec", _userspec(user), str(root), "/usr/bin/env", "-i", "-C", workdir, *assigns, *argv]
    return [
        "unshare", "--mount", "--pid", "--fork", "--kill-child", f"--mount-proc={root}/proc",
        "/bin/sh", "-c", _SETUP, "partybal-jobimage", str(root), *chroot,
    ]  # fmt: skip


def job_environment(config: ImageConfig, job_env: Mapping[str, str]) -> dict[str, str]:
    """What the entrypoint sees: the image's ENV, then the execution's variables (as on Cloud Run)."""
    return {**config.env, **{k: str(v) for k, v in job_env.items()}}


def run(image: str, job_env: Mapping[str, str], *, stdout=None, stderr=None, timeout: float | None = None) -> int:
    """Run the image's entrypoint once, as the image's user, with the image's environment plus
    ``job_env``, in a fresh copy of its filesystem. The exit status (negative: killed by signal)."""
    config = image_config(image)
    if not config.argv:
        raise ImageError(f"{image} has no entrypoint")
    with mounted(image) as root:
        cmd = command_in(root, config.argv, job_environment(config, job_env), config.user, config.workdir)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())  # unshare kills the job
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return -9
        finally:
            signal.signal(signal.SIGTERM, previous)


def stand_in_command(image: str, names: Sequence[str]) -> list[str]:
    """The Cloud Run stand-in's job command for ``image``: the named variables are the job's."""
    return [sys.executable, "-m", "partybal.local.jobimage", "--image", image, *(f"--env={n}" for n in names)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m partybal.local.jobimage", description=__doc__.splitlines()[0])
    p.add_argument("--image", required=True, help="local image (make image-local)")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="a job variable (repeatable); NAME alone: from this environment",
    )
    args = p.parse_args(argv)
    job_env: dict[str, str] = {}
    for item in args.env:
        name, eq, value = item.partition("=")
        if eq:
            job_env[name] = value
        elif name in os.environ:
            job_env[name] = os.environ[name]
    sys.stdout.flush()
    try:
        return run(args.image, job_env)
    except ImageError as exc:
        print(f"partybal: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
