#!/usr/bin/env bash
# setup.sh: prepare a Debian 12 machine to build, test and run stasis.
#
# Idempotent: installs the Debian packages the build and the tests need, then
# provisions CRIU 4.1.1 from Debian's source package into a private prefix
# (bookworm's CRIU 3.17 cannot checkpoint on current kernels). The apt state
# for the extra suite lives in a private directory; the system's sources are
# never touched. A re-run with everything in place finishes in seconds.
set -euo pipefail

CRIU_VERSION=4.1.1
CRIU_DEB_VERSION=4.1.1-1
CRIU_SUITE=trixie
PREFIX=${STASIS_LIBEXEC:-/usr/local/libexec/stasis}
CACHE=${STASIS_CACHE:-/var/cache/stasis}

log() { printf 'setup: %s\n' "$*" >&2; }

PACKAGES=(
	build-essential pkg-config git clang clang-format
	liblz4-dev libzstd-dev libxxhash-dev libsqlite3-dev libmicrohttpd-dev
	libcurl4-openssl-dev libjansson-dev libprotobuf-c-dev protobuf-c-compiler
	libgnutls28-dev gnutls-bin
	libprotobuf-dev protobuf-compiler python3-protobuf libnl-3-dev libnet1-dev
	libcap-dev libbsd-dev libnftables-dev uuid-dev libaio-dev
	python3 lz4 zstd util-linux iproute2 sqlite3 procps psmisc gnuplot-nox
	valgrind libclang-rt-14-dev xz-utils
	slurm-wlm slurmctld slurmd slurm-client munge libslurm-dev
)

install_packages() {
	local missing=()
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && { log "packages: all present"; return; }
	log "installing: ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >/dev/null
}

# The archive URI of the machine's own main Debian suite (deb822 or legacy list).
debian_uri() {
	local f uri
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		uri=$(awk '
			/^URIs:/ { u = $2 }
			/^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") s = 1 }
			/^$/ { if (u != "" && s) { print u; exit } u = ""; s = 0 }
			END { if (u != "" && s) print u }' "$f" | head -1)
		[ -n "$uri" ] && { echo "$uri"; return; }
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		uri=$(awk '$1 == "deb" && $0 ~ / bookworm / { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$f")
		[ -n "$uri" ] && { echo "$uri"; return; }
	done
	return 1
}

fetch_criu_source() {
	local apt_dir=$CACHE/apt uri
	uri=$(debian_uri) || { log "cannot find a bookworm entry in the apt sources"; exit 1; }
	mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/parts" "$apt_dir/src"
	cat >"$apt_dir/sources.list" <<EOS
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $CRIU_SUITE main
EOS
	local opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list"
		-o "Dir::Etc::SourceParts=$apt_dir/parts"
		-o "Dir::State::Lists=$apt_dir/lists"
		-o "Dir::Cache=$apt_dir/cache"
		-o "Dir::Cache::Archives=$apt_dir/archives"
		-o "APT::Sandbox::User=root")
	log "fetching criu $CRIU_DEB_VERSION source ($CRIU_SUITE)"
	apt-get "${opts[@]}" update -qq
	(cd "$apt_dir/src" && apt-get "${opts[@]}" source --download-only --tar-only \
		"criu=$CRIU_DEB_VERSION" >/dev/null)
	ls "$apt_dir/src"/criu_"$CRIU_VERSION".orig.tar.* >/dev/null
}

build_criu() {
	local bin=$PREFIX/criu
	if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "Version: $CRIU_VERSION"; then
		log "criu $CRIU_VERSION already at $bin"
		return
	fi
	local tarball
	tarball=$(ls "$CACHE"/apt/src/criu_"$CRIU_VERSION".orig.tar.* 2>/dev/null | head -1 || true)
	[ -n "$tarball" ] || { fetch_criu_source;
		tarball=$(ls "$CACHE"/apt/src/criu_"$CRIU_VERSION".orig.tar.* | head -1); }
	local build=$CACHE/build
	rm -rf "$build" && mkdir -p "$build"
	tar -C "$build" -xf "$tarball"
	local src
	src=$(find "$build" -maxdepth 1 -mindepth 1 -type d | head -1)
	log "building criu in $src"
	make -C "$src" -j"$(nproc)" criu >"$build/build.log" 2>&1 ||
		{ tail -30 "$build/build.log" >&2; log "criu build failed"; exit 1; }
	install -d -m 0755 "$PREFIX"
	install -m 0755 "$src/criu/criu" "$bin"
	log "installed $("$bin" --version | head -1) at $bin"
}

install_packages
build_criu
# stasis migrate --lazy: CRIU's lazy page server needs 4 MiB pipes, past the
# default fs.pipe-max-size where root lacks CAP_SYS_RESOURCE (docs/migration.md).
if [ "$(cat /proc/sys/fs/pipe-max-size)" -lt 4194304 ]; then
	echo 4194304 >/proc/sys/fs/pipe-max-size &&
		log "fs.pipe-max-size raised to 4 MiB (stasis migrate --lazy)" ||
		log "warning: cannot raise fs.pipe-max-size: stasis migrate --lazy will refuse"
fi
"$PREFIX/criu" check >/dev/null 2>&1 && log "criu check: looks good" ||
	log "warning: '$PREFIX/criu check' failed (run it for details)"
