#!/usr/bin/env bash
# `make image-local`: build renderer_image/Dockerfile on this machine with podman, without a
# registry. Prints the image size; the last line is the image name.
#
#   1. The base: the Dockerfile starts FROM debian:bookworm-slim, which lives in a registry these
#      machines cannot reach. Its equivalent is built once with `debootstrap --variant=minbase
#      bookworm` (slimmed the way the official image is), kept as a tarball under build/image/, and
#      `podman import`ed under the same name. On GCP (`make image`) the official image is used:
#      the two images differ only in where the base came from.
#   2. `podman build --isolation=chroot --network host` (no OCI runtime needed). Unchanged inputs
#      reuse podman's layer cache (its default storage), so a rebuild takes seconds.
#      The build machine's CA bundle is mounted read-only at /mnt for the build
#      only (HTTPS may go through a proxy whose CA is in that bundle; pip is pointed at it by a
#      build argument); proxy variables pass through (podman's --http-proxy).
#
# Environment: IMAGE_LOCAL (default localhost/partybal-renderer:local), PODMAN (default podman),
# DOCKERFILE (default renderer_image/Dockerfile), PODMAN_BUILD_FLAGS (extra flags, e.g. --no-cache),
# PARTYBAL_PODMAN_STORAGE=vfs to use the vfs driver where overlay mounts are refused (slower).
# Needs root (debootstrap, podman storage, chroot); re-runs itself with sudo when available.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE_LOCAL="${IMAGE_LOCAL:-localhost/partybal-renderer:local}"
BASE_IMAGE="docker.io/library/debian:bookworm-slim"
BASE_DIR="build/image"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PODMAN="${PODMAN:-podman}"
DOCKERFILE="${DOCKERFILE:-renderer_image/Dockerfile}"

die() { echo "image-local: $*" >&2; exit 1; }

if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || die "needs root (debootstrap, podman, chroot): run it as root"
  exec sudo --preserve-env=IMAGE_LOCAL,PODMAN,DOCKERFILE,PODMAN_BUILD_FLAGS,PARTYBAL_PODMAN_STORAGE,DEBIAN_MIRROR,HTTP_PROXY,HTTPS_PROXY,NO_PROXY,http_proxy,https_proxy,no_proxy "$0" "$@"
fi
for tool in "$PODMAN" debootstrap tar; do
  command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install podman debootstrap; make setup does)"
done
podman_cmd=("$PODMAN")
[[ -n "${PARTYBAL_PODMAN_STORAGE:-}" ]] && podman_cmd+=(--storage-driver "$PARTYBAL_PODMAN_STORAGE")

make_base() {
  # debootstrap's minbase, slimmed like the official debian:bookworm-slim (debuerreotype --slimify):
  # no docs, man pages, locales; apt sources as in the official image (incl. security updates).
  local root="$BASE_DIR/rootfs.tmp"
  rm -rf "$root" && mkdir -p "$root"
  echo "image-local: creating the bookworm base (debootstrap --variant=minbase, once; cached in $BASE_TAR)"
  debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$BASE_DIR/debootstrap.log" 2>&1 \
    || { tail -5 "$BASE_DIR/debootstrap.log" >&2; die "debootstrap failed (log: $BASE_DIR/debootstrap.log)"; }
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  printf 'Acquire::Languages "none";\n' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  printf 'Acquire::GzipIndexes "true";\n' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
  printf 'APT::AutoRemove::SuggestsImportant "false";\n' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$root"/usr/share/{man,groff,info,lintian,linda}/* "$root"/var/lib/apt/lists/* \
    "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/*
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
  : >"$root/etc/machine-id"
  rm -f "$root/etc/resolv.conf" "$root/etc/hostname"  # debootstrap copies the build machine's
  tar --numeric-owner --xattrs -C "$root" -cf "$BASE_TAR.tmp" .
  mv "$BASE_TAR.tmp" "$BASE_TAR"
  rm -rf "$root"
}

main() {  # one function: bash has read all of it before it runs, so editing this file mid-build is safe
started=$(date +%s)
mkdir -p "$BASE_DIR"
# The base's recipe (make_base) names its tarball and labels the imported image: a changed recipe
# makes a new base; an unchanged one is reused from build/ and from podman's storage.
recipe=$(declare -f make_base | sha256sum | cut -c1-12)
BASE_TAR="$BASE_DIR/debian-bookworm-slim-$recipe.tar"
imported=$("${podman_cmd[@]}" image inspect --format '{{index .Labels "partybal.base"}}' "$BASE_IMAGE" 2>/dev/null || true)
if [[ "$imported" != "$recipe" ]]; then
  if [[ ! -s "$BASE_TAR" ]]; then
    rm -f "$BASE_DIR"/debian-bookworm-slim-*.tar
    make_base
  fi
  echo "image-local: importing $BASE_TAR as $BASE_IMAGE (local stand-in for the official image)"
  "${podman_cmd[@]}" import --change 'CMD ["bash"]' --change "LABEL partybal.base=$recipe" \
    --message "debootstrap --variant=minbase bookworm (partybal scripts/image-local.sh)" "$BASE_TAR" "$BASE_IMAGE" >/dev/null
fi
echo "image-local: base ready in $(( $(date +%s) - started )) s"

build_args=()
# On /mnt (empty in the base; a new mount point would stay in the image as an empty folder), not
# on the image's own /etc/ssl/certs, which ca-certificates writes to during the build.
[[ -f /etc/ssl/certs/ca-certificates.crt ]] \
  && build_args+=(--volume /etc/ssl/certs:/mnt:ro --build-arg PIP_CERT=/mnt/ca-certificates.crt)
echo "image-local: podman build -f $DOCKERFILE -t $IMAGE_LOCAL ."
# shellcheck disable=SC2086  # PODMAN_BUILD_FLAGS: words
"${podman_cmd[@]}" build --isolation=chroot --network host "${build_args[@]}" ${PODMAN_BUILD_FLAGS:-} \
  -f "$DOCKERFILE" -t "$IMAGE_LOCAL" . || die "podman build failed"
# Earlier builds of the image that nothing uses any more (not the layer cache): keep the disk in check.
"${podman_cmd[@]}" image prune --force --filter label=org.opencontainers.image.title=partybal-renderer >/dev/null || true
size=$("${podman_cmd[@]}" image inspect --format '{{.Size}}' "$IMAGE_LOCAL")
echo "image-local: built $IMAGE_LOCAL in $(( $(date +%s) - started )) s; size $(( size / 1000000 )) MB ($size bytes)"
echo "$IMAGE_LOCAL"
}

main "$@"
