#!/usr/bin/env bash
# Fetches upstream cpp-httplib's source as Debian carries it and installs it
# with upstream's own CMake (httplibConfig.cmake, target httplib::httplib),
# the way vcpkg, conan and FetchContent users get it.
#
#   scripts/get-cpp-httplib.sh VERSION PREFIX [SOURCE_DIR] [--compiled]
#
#   VERSION     0.18.7 (Debian 13, "trixie") or newest (the newest release
#               Debian carries as a source package: its unstable suite, "sid")
#   PREFIX      where `cmake --install` puts it (include/httplib.h,
#               lib/cmake/httplib/httplibConfig.cmake)
#   SOURCE_DIR  where the unpacked upstream source stays (for a host that
#               add_subdirectory's it); default: a temporary folder, removed
#   --compiled  upstream's compiled mode (HTTPLIB_COMPILE=ON: split.py makes
#               httplib.h + httplib.cc, a static library; needs python3)
#
# The source comes through a private apt configuration in a temporary folder:
# a deb-src entry for the suite on the archive this machine's apt already
# uses (read from /etc/apt), so nothing of the machine's apt setup changes.
# The last line of output is "cpp-httplib A.B.C installed into PREFIX".
set -euo pipefail

usage() {
  echo "usage: $0 VERSION PREFIX [SOURCE_DIR] [--compiled]   (VERSION: 0.18.7 or newest)" >&2
  exit 2
}
compiled=OFF
positional=()
for arg in "$@"; do
  case "$arg" in
    --compiled) compiled=ON ;;
    -*) usage ;;
    *) positional+=("$arg") ;;
  esac
done
[ "${#positional[@]}" -ge 2 ] && [ "${#positional[@]}" -le 3 ] || usage
want=${positional[0]}
prefix=$(realpath -m "${positional[1]}")
source_dir=${positional[2]:-}
case "$want" in
  newest) suite=sid ;;
  0.18.7) suite=trixie ;;
  *) echo "$0: VERSION must be 0.18.7 or newest, not '$want'" >&2; exit 2 ;;
esac

# The archive this machine's apt uses: the first Debian archive URI (not the
# security archive) in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list.
archive=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  archive=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$f")
  [ -n "$archive" ] && break
done
if [ -z "$archive" ] && [ -f /etc/apt/sources.list ]; then
  archive=$(awk '$1 == "deb" || $1 == "deb-src" {
                   for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\// && $i !~ /security/) { print $i; exit } }' /etc/apt/sources.list)
fi
if [ -z "$archive" ]; then
  echo "$0: no Debian archive found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list" >&2
  exit 1
fi
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/etc/sources.list.d" "$work/lists/partial" "$work/cache/archives/partial" "$work/dl"
cat > "$work/etc/sources.list.d/src.sources" <<EOF
Types: deb-src
URIs: $archive
Suites: $suite
Components: main
Signed-By: $keyring
EOF
apt_opts=(-o Dir::Etc::SourceList=/dev/null
          -o "Dir::Etc::SourceParts=$work/etc/sources.list.d"
          -o "Dir::State::Lists=$work/lists"
          -o "Dir::Cache=$work/cache"
          -o Dir::State::status=/var/lib/dpkg/status
          -o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" -qq update

# The Debian version to fetch: for 0.18.7 the one whose upstream part is
# 0.18.7 (whatever Debian revision the suite has); for newest, the highest.
debian_version=$(apt-cache "${apt_opts[@]}" showsrc cpp-httplib | awk '/^Version:/ { print $2 }' | sort -V |
                 if [ "$want" = newest ]; then tail -n 1; else grep -E "^([0-9]+:)?${want//./\\.}([+~-]|$)" | tail -n 1; fi)
if [ -z "$debian_version" ]; then
  echo "$0: the $suite suite carries no cpp-httplib source for '$want'" >&2
  exit 1
fi
(cd "$work/dl" && apt-get "${apt_opts[@]}" -qq source --download-only "cpp-httplib=$debian_version")
orig=$(ls "$work"/dl/cpp-httplib_*.orig.tar.* | head -n 1)

if [ -n "$source_dir" ]; then
  rm -rf "$source_dir"
  src=$source_dir
else
  src=$work/src
fi
mkdir -p "$src"
tar -xf "$orig" -C "$src" --strip-components=1
src=$(realpath "$src")
version=$(sed -n 's/^#define CPPHTTPLIB_VERSION "\([^"]*\)".*/\1/p' "$src/httplib.h")
upstream=${debian_version#*:}
upstream=${upstream%-*}
upstream=${upstream%%+*}
if [ "$version" != "$upstream" ]; then
  echo "$0: httplib.h says $version, the Debian source $debian_version" >&2
  exit 1
fi
echo "cpp-httplib: Debian source $debian_version from $suite, upstream $version (compiled: $compiled)"

cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DHTTPLIB_COMPILE="$compiled" -DHTTPLIB_REQUIRE_OPENSSL=ON \
  -DHTTPLIB_USE_ZLIB_IF_AVAILABLE=OFF -DHTTPLIB_USE_BROTLI_IF_AVAILABLE=OFF \
  -DHTTPLIB_USE_ZSTD_IF_AVAILABLE=OFF > "$work/configure.log" || { cat "$work/configure.log" >&2; exit 1; }
cmake --build "$work/build" -j "$(nproc)" > "$work/build.log" || { cat "$work/build.log" >&2; exit 1; }
cmake --install "$work/build" > "$work/install.log" || { cat "$work/install.log" >&2; exit 1; }
echo "cpp-httplib $version installed into $prefix"
