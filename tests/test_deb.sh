#!/usr/bin/env bash
# test_deb.sh - the Debian packages: `cpack -G DEB` in the build folder makes
# clipscore_VERSION_ARCH.deb, whose dependencies name libtorch, libcurl,
# cairo, pango and OpenBLAS as packages, and libclipscore-dev_...deb;
# `apt-get install ./...deb` installs them, /usr/bin/clipscore runs and
# scores, the example builds with pkg-config against /usr and runs, and
# `apt-get purge` takes both away again (on failure too). It changes the
# system, so it needs root and apt-get (skipped otherwise: exit 77), and it
# never touches a clipscore that was installed before it.
#   test_deb.sh BUILD_DIR VERSION MAKE_TINY_MODEL SOURCE_DIR [CFLAGS...]
# CFLAGS: what programs linking the library need (the sanitizers of a
# sanitized build).
set -euo pipefail
build=$1 version=$2 make_tiny_model=$3 src=$4
shift 4
cflags=("$@")
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null || ! command -v dpkg-shlibdeps >/dev/null; then
    echo "SKIP: needs root, apt-get and dpkg-shlibdeps"
    exit 77
fi
# One run at a time on this machine (other checkouts may run it too).
exec 9>/tmp/clipscore-test-deb.lock
flock -w 900 9
if dpkg-query -W clipscore libclipscore-dev >/dev/null 2>&1 || [ -e /usr/bin/clipscore ] || [ -e /usr/include/clipscore.h ]; then
    echo "SKIP: a clipscore is already installed here; not replacing it"
    exit 77
fi
tmp=$(mktemp -d)
installed=0
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    if [ "$installed" -eq 1 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq -o DPkg::Lock::Timeout=300 clipscore libclipscore-dev >/dev/null ||
            echo "FAIL: could not remove the clipscore packages"
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
fail=0
failed() {
    echo "FAIL: $*"
    fail=1
}

arch=$(dpkg --print-architecture)
deb=clipscore_${version}_$arch.deb dev=libclipscore-dev_${version}_$arch.deb
cd "$build"
rm -f "$deb" "$dev"
cpack -G DEB >"$tmp/cpack.log" 2>&1 || {
    cat "$tmp/cpack.log"
    echo "FAIL: cpack -G DEB"
    exit 1
}
if [ ! -f "$deb" ] || [ ! -f "$dev" ]; then
    ls ./*.deb
    echo "FAIL: no $deb and $dev"
    exit 1
fi
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for pkg in libtorch libcurl4 libcairo2 libpango-1.0 libopenblas0 libcjson1 libjpeg; do
    case $depends in *"$pkg"*) ;; *) failed "Depends lacks $pkg" ;; esac
done

installed=1
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 "./$deb" "./$dev" >"$tmp/apt.log" 2>&1 || {
    cat "$tmp/apt.log"
    echo "FAIL: apt-get install ./$deb ./$dev"
    exit 1
}
/usr/bin/clipscore --version | grep -q "^clipscore $version " || failed "/usr/bin/clipscore --version: $(/usr/bin/clipscore --version 2>&1)"
# Through the loader's cache (/lib may be a link to /usr/lib).
loaded=$(ldd /usr/bin/clipscore | sed -n 's/.*libclipscore\.so\.[0-9]* => \([^ ]*\) .*/\1/p')
{ [ -n "$loaded" ] && dpkg -S "$(realpath "$loaded")" 2>/dev/null | grep -q "^clipscore:"; } ||
    failed "/usr/bin/clipscore does not load the packaged library: $(ldd /usr/bin/clipscore | grep clipscore)"
"$make_tiny_model" "$tmp/model" hf 3 >/dev/null
cp -r "$src/assets/example" "$tmp/example"
/usr/bin/clipscore "$tmp/example/pairs.csv" -m "$tmp/model" -o "$tmp/out" -q --no-figures || failed "/usr/bin/clipscore exited $?"
[ -s "$tmp/out/output.csv" ] || failed "no output.csv"

# The example, against /usr only (not a .pc file under /usr/local).
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
export PKG_CONFIG_LIBDIR=/usr/lib/$multiarch/pkgconfig:/usr/lib/pkgconfig:/usr/share/pkgconfig
# shellcheck disable=SC2046 # pkg-config's output is a list of flags
# The packaged copy, unless dpkg is set to leave out /usr/share/doc (minimal
# images and mmdebstrap chroots): then the source tree's.
example=/usr/share/doc/clipscore/examples/c/score_csv.c
[ -f "$example" ] || example=$src/examples/c/score_csv.c
cc -std=c11 -Wall -Wextra -Werror "${cflags[@]}" "$example" \
    -o "$tmp/score_csv" $(pkg-config --cflags --libs clipscore) || failed "the example does not build against /usr"
"$tmp/score_csv" "$tmp/example/pairs.csv" "$tmp/model" "$tmp/out-example" || failed "the example exited $?"
cmp "$tmp/out/output.csv" "$tmp/out-example/output.csv" || failed "the example's output.csv differs from clipscore's"

DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq -o DPkg::Lock::Timeout=300 clipscore libclipscore-dev >/dev/null
installed=0
if [ -e /usr/bin/clipscore ] || [ -e /usr/include/clipscore.h ]; then failed "files left after apt-get purge"; fi
! dpkg-query -W clipscore libclipscore-dev >/dev/null 2>&1 || failed "a clipscore package is still known to dpkg after the purge"

[ $fail -eq 0 ] && echo "$deb and $dev built, installed with apt-get, used, and removed"
exit $fail
