# fuzz_opts.sh - per-harness libFuzzer options shared by smoke.sh and
# campaign.sh (sourced, not run): input size cap and dictionary.
# Images get room for whole small files; the others stay small so that
# mutations stay fast.
fuzz_opts() {
    local h=$1 dir=$2 max_len
    case $h in
    image) max_len=65536 ;;
    vocab) max_len=32768 ;;
    safetensors) max_len=16384 ;;
    csv | model_config) max_len=8192 ;;
    tar) max_len=16384 ;;
    *) max_len=2048 ;;
    esac
    echo "-max_len=$max_len -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=30"
    if [ -f "$dir/dict/$h.dict" ]; then echo "-dict=$dir/dict/$h.dict"; fi
}
