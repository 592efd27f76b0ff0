#!/usr/bin/env bash
# test_docs.sh - the man page and the bash completion against the program:
# clipscore.1 renders without a groff or man warning, its options are exactly
# those of `clipscore --help`, and so are the completion's, which completes
# options, subcommands and model names (from `clipscore models`).
#   test_docs.sh CLIPSCORE MAN_PAGE COMPLETION
set -euo pipefail
bin=$(realpath "$1") man_page=$(realpath "$2") completion=$(realpath "$3")
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" # file names in the current folder would join the completions
export CLIPSCORE_CACHE=$tmp/cache CLIPSCORE_OFFLINE=1
export LC_ALL=C.UTF-8 # a missing locale would be a warning of its own

# Rendering: any warning is a failure (man -l runs groff as a reader would).
groff -ww -man -z "$man_page" 2>"$tmp/groff.err" || fail=1
MANWIDTH=80 man --warnings -l "$man_page" >"$tmp/man.txt" 2>"$tmp/man.err" || fail=1
for f in groff man; do
    if [ -s "$tmp/$f.err" ]; then
        echo "FAIL: $f warns about $man_page:"
        cat "$tmp/$f.err"
        fail=1
    fi
done
version=$("$bin" --version | awk '{ print $2 }')
grep -q "^\.TH CLIPSCORE 1 .*\"clipscore $version\"" "$man_page" || { echo "FAIL: the page's .TH does not say clipscore $version"; fail=1; }
for section in NAME SYNOPSIS DESCRIPTION OPTIONS "EXIT STATUS" ENVIRONMENT FILES EXAMPLES "SEE ALSO"; do
    grep -qx "$section" "$tmp/man.txt" || { echo "FAIL: no $section section"; fail=1; }
done
for var in CLIPSCORE_CACHE CLIPSCORE_REGISTRY CLIPSCORE_OFFLINE CLIPSCORE_MIRROR HF_ENDPOINT HF_TOKEN; do
    grep -q "^       $var" "$tmp/man.txt" || { echo "FAIL: ENVIRONMENT lacks $var"; fail=1; }
done

# An option is a word starting with - or -- after a space, start of line or
# bracket (so "L2-normalised" is not one).
options() { grep -oE '(^|[[:space:],(|[])--?[a-z][a-z0-9-]*' | sed 's/^[^-]*//' | sort -u; }
"$bin" --help | options >"$tmp/help"
# The page's source, with troff's \- and font escapes taken out, comments
# left out: the options documented (the tags of OPTIONS' .TP paragraphs) must
# be those of --help, and the page may mention no other anywhere.
grep -v '^\.\\"' "$man_page" | sed 's/\\-/-/g; s/\\f[BIRP]//g' >"$tmp/page"
awk '/^\.SH/ { in_opts = ($2 == "OPTIONS") } in_opts && tag { print } { tag = /^\.TP/ }' \
    "$tmp/page" | options >"$tmp/man"
options <"$tmp/page" >"$tmp/page-options"
if [ -n "$(comm -13 "$tmp/help" "$tmp/page-options")" ]; then
    echo "FAIL: the man page mentions options --help lacks: $(comm -13 "$tmp/help" "$tmp/page-options" | tr '\n' ' ')"
    fail=1
fi
# shellcheck source=/dev/null
# shellcheck disable=SC2154,SC2086 # set by the completion; one option a word
(. "$completion" && printf '%s\n' $_clipscore_options) | options >"$tmp/completion"
[ "$(wc -l <"$tmp/help")" -gt 20 ] || { echo "FAIL: too few options read from --help"; fail=1; }
for other in man completion; do
    if ! diff -u --label help "$tmp/help" --label "$other" "$tmp/$other"; then
        echo "FAIL: the options of --help and of the $other differ (lines above)"
        fail=1
    fi
done

# Completion as bash calls it: the line so far, the cursor at its end.
complete_line() {
    bash -c '. "$1"; COMP_LINE=$2; COMP_POINT=${#COMP_LINE}; _clipscore; printf "%s\n" "${COMPREPLY[@]}"' \
        _ "$completion" "$1"
}
expect() { # LINE WORD...: the completions of LINE are exactly WORD...
    local line=$1
    shift
    local got want
    got=$(complete_line "$line" | sort)
    want=$(printf '%s\n' "$@" | sort)
    if [ "$got" != "$want" ]; then
        echo "FAIL: completing '$line': got [$(echo "$got" | tr '\n' ' ')], expected [$*]"
        fail=1
    fi
}
expect "$bin --mod" --model
expect "$bin --no-f" --no-figures
expect "$bin mod" models
mkdir -p "$tmp/data" && touch "$tmp/data/pairs.csv" "$tmp/data/notes.txt"
expect "$bin data/" data/pairs.csv
expect "$bin models " list fetch
expect "$bin --metric c" cosine clipscore
expect "$bin -m ViT-L" ViT-L/14 ViT-L/14@336px
expect "$bin -m RN50x" RN50x4 RN50x16 RN50x64
expect "$bin models fetch ViT-B/1" ViT-B/16
expect "$bin embed --precision b" bf16

[ $fail -eq 0 ] && echo "man page, --help and completion agree"
exit $fail
