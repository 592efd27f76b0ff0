#!/bin/sh
# download.sh - puts a CLIP model into the clipscore cache, whisper.cpp style.
#
#   models/download.sh [NAME] [CLIPSCORE_BINARY]
#
# NAME is one of the known names (default ViT-B/32). With a clipscore binary
# (the second argument, $CLIPSCORE_BIN, build/clipscore or `clipscore` on the
# PATH) this runs `clipscore models fetch NAME`, which also accepts registry
# names and hf:ORG/NAME[@REV]. Without one it downloads the files itself with
# curl and checks their SHA-256, skipping files already present and valid.
# Honours CLIPSCORE_CACHE, XDG_CACHE_HOME, CLIPSCORE_MIRROR, CLIPSCORE_OFFLINE.
# Leaves out: hf: and registry names in the curl fallback (use the binary).
set -eu

known="ViT-B/32 ViT-B/16 ViT-L/14 ViT-L/14@336px RN50 RN101 RN50x4 RN50x16 RN50x64"
name=${1:-ViT-B/32}
bin=${2:-${CLIPSCORE_BIN:-}}

usage() {
    echo "usage: $0 [NAME] [CLIPSCORE_BINARY]" >&2
    echo "known names: $known (hf:ORG/NAME[@REV] and registry names need the binary)" >&2
    exit 2
}

case "$name" in
-h | --help) usage ;;
esac

is_known=0
for k in $known; do
    [ "$k" = "$name" ] && is_known=1
done

# Find a clipscore binary unless one was given.
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "$bin" ]; then
    if [ -x "$here/../build/clipscore" ]; then
        bin="$here/../build/clipscore"
    elif command -v clipscore >/dev/null 2>&1; then
        bin=clipscore
    fi
fi

if [ -n "$bin" ]; then
    case "$name" in
    hf:*) ;;
    *) [ "$is_known" = 1 ] || [ -n "${CLIPSCORE_REGISTRY:-}" ] || {
        echo "$0: unknown model '$name'" >&2
        usage
    } ;;
    esac
    exec "$bin" models fetch "$name"
fi

[ "$is_known" = 1 ] || {
    echo "$0: unknown model '$name' (without a clipscore binary only the known names work)" >&2
    usage
}
case "${CLIPSCORE_OFFLINE:-0}" in
"" | 0) ;;
*)
    echo "$0: CLIPSCORE_OFFLINE is set; not downloading $name" >&2
    exit 1
    ;;
esac
command -v curl >/dev/null 2>&1 || {
    echo "$0: needs curl (or a clipscore binary)" >&2
    exit 1
}

sha256() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

case "$name" in
ViT-B/32)
    file=ViT-B-32.pt
    sha=40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af
    ;;
ViT-B/16)
    file=ViT-B-16.pt
    sha=5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f
    ;;
ViT-L/14)
    file=ViT-L-14.pt
    sha=b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836
    ;;
ViT-L/14@336px)
    file=ViT-L-14-336px.pt
    sha=3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02
    ;;
RN50)
    file=RN50.pt
    sha=afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762
    ;;
RN101)
    file=RN101.pt
    sha=8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599
    ;;
RN50x4)
    file=RN50x4.pt
    sha=7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd
    ;;
RN50x16)
    file=RN50x16.pt
    sha=52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa
    ;;
RN50x64)
    file=RN50x64.pt
    sha=be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c
    ;;
esac
model_url="https://openaipublic.azureedge.net/clip/models/$sha/$file"
bpe=bpe_simple_vocab_16e6.txt.gz
bpe_sha=924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a
bpe_url="https://raw.githubusercontent.com/openai/CLIP/d05afc436d78f1c48dc0dbf8e5980a9d471f35f6/clip/$bpe"

# The same cache folder clipscore uses.
if [ -n "${CLIPSCORE_CACHE:-}" ]; then
    cache=$CLIPSCORE_CACHE
elif [ -n "${XDG_CACHE_HOME:-}" ]; then
    cache=$XDG_CACHE_HOME/clipscore
else
    cache=$HOME/.cache/clipscore
fi
dir="$cache/$(echo "$name" | sed 's|[/@]|-|g')"
mkdir -p "$dir"

# One fetcher per folder, as clipscore does (when flock(1) is available).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$dir/.lock"
    flock 9
fi

mirror() {
    if [ -n "${CLIPSCORE_MIRROR:-}" ]; then
        echo "${CLIPSCORE_MIRROR%/}/$(echo "$1" | sed -e 's|^[a-z]*://[^/]*/||')"
    else
        echo "$1"
    fi
}

# fetch FILE SHA URL: resumable download to FILE.part, verified, then moved.
fetch() {
    dest="$dir/$1"
    if [ -f "$dest" ] && [ "$(sha256 "$dest")" = "$2" ]; then
        echo "$1: present"
        return 0
    fi
    url=$(mirror "$3")
    echo "$1: downloading $url"
    # A bar on a terminal, quiet (errors only) otherwise.
    if [ -t 2 ]; then show=-#; else show=-sS; fi
    curl "$show" -fL --retry 3 --connect-timeout 30 -C - -o "$dest.part" "$url" || {
        echo "$0: download failed: $url (partial file kept for a resume)" >&2
        return 1
    }
    got=$(sha256 "$dest.part")
    if [ "$got" != "$2" ]; then
        rm -f "$dest.part"
        echo "$0: checksum mismatch for $url: expected $2, got $got (nothing cached)" >&2
        return 1
    fi
    mv -f "$dest.part" "$dest"
}

fetch "$file" "$sha" "$model_url"
fetch "$bpe" "$bpe_sha" "$bpe_url"

# Record what was verified, so clipscore need not hash the files again.
size() { wc -c <"$dir/$1" | tr -d ' '; }
cat >"$dir/.clipscore-manifest.json.tmp.$$" <<EOF
{
	"files": {
		"$file": {"sha256": "$sha", "size": $(size "$file"), "url": "$model_url"},
		"$bpe": {"sha256": "$bpe_sha", "size": $(size "$bpe"), "url": "$bpe_url"}
	},
	"spec": "$name"
}
EOF
mv -f "$dir/.clipscore-manifest.json.tmp.$$" "$dir/.clipscore-manifest.json"
echo "$name: $dir"
