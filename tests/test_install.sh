#!/usr/bin/env bash
# test_install.sh - `cmake --install` into a temporary prefix, then use only
# what it installed: the binary scores the example CSV (from another folder,
# finding libclipscore.so through its RPATH), examples/c/score_csv.c builds
# with pkg-config against the install (shared, and static with
# Libs.private) and gives the same scores, libclipscore.so exports exactly
# the clipscore_ functions of the header, and the man page, completion and
# docs are in place.
#   test_install.sh BUILD_DIR SOURCE_DIR MAKE_TINY_MODEL SOVERSION [CFLAGS...]
# CFLAGS: what programs linking the library need (the sanitizers of a
# sanitized build).
set -euo pipefail
build=$1 src=$2 make_tiny_model=$3 soversion=$4
shift 4
cflags=("$@")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail=0
failed() {
    echo "FAIL: $*"
    fail=1
}

cmake --install "$build" --prefix "$prefix" >"$tmp/install.log"
lib=$(find "$prefix" -name "libclipscore.so.$soversion" -print -quit)
[ -n "$lib" ] || {
    cat "$tmp/install.log"
    echo "FAIL: no libclipscore.so.$soversion installed"
    exit 1
}
libdir=$(dirname "$lib")
for f in bin/clipscore include/clipscore.h share/man/man1/clipscore.1 \
    share/bash-completion/completions/clipscore share/doc/clipscore/README.md \
    share/doc/clipscore/LICENSE share/doc/clipscore/models/README.md \
    share/doc/clipscore/examples/c/score_csv.c share/doc/clipscore/examples/slurm/submit.sh \
    share/doc/clipscore/examples/slurm/clipscore-array.sbatch share/doc/clipscore/examples/slurm/clipscore-merge.sbatch; do
    [ -f "$prefix/$f" ] || failed "$f not installed"
done
for f in libclipscore.so libclipscore.a pkgconfig/clipscore.pc; do
    [ -e "$libdir/$f" ] || failed "${libdir#"$prefix"/}/$f not installed"
done
cmp -s "$src/man/clipscore.1" "$prefix/share/man/man1/clipscore.1" || failed "man page differs"

# The library: its SONAME, and nothing exported beyond the header's functions.
readelf -d "$lib" | grep -q "(SONAME).*\[libclipscore.so.$soversion\]" || failed "SONAME is not libclipscore.so.$soversion"
nm -D --defined-only "$lib" | awk '{ print $NF }' | sort -u >"$tmp/exported"
# Every function the installed header declares (as the compiler reads it, so
# one declared without CLIPSCORE_API, hence hidden, shows as missing).
cc -aux-info "$tmp/aux" -fsyntax-only -x c "$prefix/include/clipscore.h"
sed -n 's|^/\* [^ ]*/clipscore\.h:[^*]*\*/ .*[ *]\([A-Za-z_][A-Za-z0-9_]*\) (.*|\1|p' "$tmp/aux" | sort -u >"$tmp/api"
[ "$(wc -l <"$tmp/api")" -ge 15 ] || failed "too few functions read from the header"
if ! diff -u --label header "$tmp/api" --label "nm -D" "$tmp/exported"; then
    failed "libclipscore.so's exports are not the header's functions (lines above)"
fi

# The binary: RUNPATH relative to itself, libclipscore from the prefix.
runpath=$(readelf -d "$prefix/bin/clipscore" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')
# shellcheck disable=SC2016 # a literal $ORIGIN
case $runpath in
'$ORIGIN/'*) ;;
*) failed "bin/clipscore's RUNPATH is '$runpath', not \$ORIGIN/..." ;;
esac
case $runpath in *"$build"*) failed "bin/clipscore's RUNPATH names the build folder: $runpath" ;; esac
case $(readelf -d "$lib" | grep -E "R(UN)?PATH" || true) in *"$build"*) failed "libclipscore.so's RUNPATH names the build folder" ;; esac
loads() { # PROGRAM: the libclipscore it loads, resolved
    realpath "$(ldd "$1" | sed -n "s/.*libclipscore.so.$soversion => \([^ ]*\) .*/\1/p")"
}
[ "$(loads "$prefix/bin/clipscore")" = "$(realpath "$lib")" ] ||
    failed "bin/clipscore does not load $lib: $(ldd "$prefix/bin/clipscore" | grep clipscore)"

# Score the example: a tiny random model, the example images, from $tmp.
"$make_tiny_model" "$tmp/model" hf 3 >/dev/null
cp -r "$src/assets/example" "$tmp/example"
rows=$(($(wc -l <"$tmp/example/pairs.csv") - 1))
cd "$tmp"
"$prefix/bin/clipscore" --version
"$prefix/bin/clipscore" example/pairs.csv -m model -o out-cli -q --no-figures ||
    failed "installed clipscore exited $?"
scored() { # the number of rows of an output.csv with a similarity
    python3 -c 'import csv,sys; print(sum(1 for r in csv.DictReader(open(sys.argv[1])) if r["similarity"]))' "$1"
}
[ "$(scored out-cli/output.csv)" = "$rows" ] || failed "installed clipscore did not score all $rows rows"

# The example program, built as a user would, against the install only.
export PKG_CONFIG_PATH=$libdir/pkgconfig
example=$prefix/share/doc/clipscore/examples/c/score_csv.c
# shellcheck disable=SC2046 # pkg-config's output is a list of flags
cc -std=c11 -Wall -Wextra -Werror "${cflags[@]}" "$example" -o score_csv $(pkg-config --cflags --libs clipscore)
[ "$(LD_LIBRARY_PATH=$libdir loads ./score_csv)" = "$(realpath "$lib")" ] || failed "score_csv does not load $lib"
LD_LIBRARY_PATH=$libdir ./score_csv example/pairs.csv model out-example >example.txt || failed "score_csv exited $?"
cat example.txt
grep -q "^rows $rows scored $rows failed 0 mean " example.txt || failed "score_csv's summary is wrong"
cmp out-cli/output.csv out-example/output.csv || failed "score_csv's output.csv differs from clipscore's"

# And statically: libclipscore.a with the Requires.private/Libs.private flags.
# shellcheck disable=SC2046
cc -std=c11 "${cflags[@]}" "$example" -o score_csv_static $(pkg-config --cflags clipscore) \
    $(pkg-config --static --libs clipscore | sed 's/-lclipscore\b/-l:libclipscore.a/')
if readelf -d score_csv_static | grep -q "NEEDED.*libclipscore"; then failed "score_csv_static needs libclipscore.so"; fi
./score_csv_static example/pairs.csv model out-static >/dev/null || failed "score_csv_static exited $?"
cmp out-cli/output.csv out-static/output.csv || failed "the static build's output.csv differs"

[ $fail -eq 0 ] && echo "installed into $prefix: binary, library, pkg-config, example all work"
exit $fail
