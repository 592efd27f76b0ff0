# clipscore.bash - bash completion for clipscore: subcommands, options, their
# values, and model names (from `clipscore models`). Installed as
# share/bash-completion/completions/clipscore; plain bash, so it also works
# when sourced without the bash-completion package.

# The options of `clipscore --help` (tests/test_docs.sh keeps them in step).
_clipscore_options="-m --model --device --precision -b --batch-size -t --threads -o --output
--image-column --caption-column --reference-column --image-root --template --metric
--save-embeddings --no-figures --figure-limit --no-report --report-pairs --max-pixels --decode
--image-key --caption-key --shard --keep-threshold --keep-fraction --restart --no-resume --offline
-q --quiet -h --help --version --jsonl --images --texts"

# Known model names: the rows of `clipscore models` under its NAME header
# ("*" marks the default).
_clipscore_models() {
    "${1:-clipscore}" models list 2>/dev/null |
        awk '$1 == "NAME" { on = 1; next } on { print ($1 == "*" ? $2 : $1) }'
}

# Inputs: CSVs, tar shards and folders.
_clipscore_inputs() {
    compgen -f -X '!*.csv' -- "$1"
    compgen -f -X '!*.tar' -- "$1"
    compgen -f -X '!*.tar.gz' -- "$1"
    compgen -f -X '!*.tgz' -- "$1"
    compgen -d -- "$1"
}

# shellcheck disable=SC2207 # IFS is a newline below: one completion a line
_clipscore() {
    # Words from the line itself: readline splits "hf:ORG/NAME" at the ':',
    # which would make ':' the previous word.
    local line=${COMP_LINE:0:COMP_POINT} words
    read -ra words <<<"$line"
    [[ -z $line || $line == *[[:space:]] ]] && words+=("")
    local n=${#words[@]}
    local cur=${words[n - 1]} prev=""
    ((n > 1)) && prev=${words[n - 2]}
    local cmd=score i
    for ((i = 1; i < n - 1; i++)); do
        case ${words[i]} in
        score | tokenize | preprocess | embed | models | info | merge)
            cmd=${words[i]}
            break
            ;;
        esac
    done
    local IFS=$'\n'
    COMPREPLY=()
    case $prev in
    -m | --model)
        COMPREPLY=($(compgen -W "$(_clipscore_models "${words[0]}")" -- "$cur")
            $(compgen -f -- "$cur"))
        ;;
    --device) COMPREPLY=($(compgen -W $'auto\ncpu\ncuda\ncuda:0' -- "$cur")) ;;
    --precision) COMPREPLY=($(compgen -W $'auto\nfp32\nfp16\nbf16' -- "$cur")) ;;
    --metric) COMPREPLY=($(compgen -W $'cosine\nclipscore' -- "$cur")) ;;
    --decode) COMPREPLY=($(compgen -W $'exact\nfast' -- "$cur")) ;;
    -o | --output | --image-root | --save-embeddings) COMPREPLY=($(compgen -d -- "$cur")) ;;
    --texts) COMPREPLY=($(compgen -f -- "$cur")) ;;
    --shard) COMPREPLY=($(compgen -W $'slurm\n0/' -- "$cur")) ;;
    -b | --batch-size | -t | --threads | --figure-limit | --report-pairs | --max-pixels | \
        --template | --image-column | --caption-column | --reference-column | --image-key | \
        --caption-key | --keep-threshold | --keep-fraction) ;;
    *)
        if [[ $cur == -* ]]; then
            IFS=$' \n' COMPREPLY=($(compgen -W "$_clipscore_options" -- "$cur"))
        elif [[ $cmd == models ]]; then
            if [[ $prev == fetch ]]; then
                COMPREPLY=($(compgen -W "$(_clipscore_models "${words[0]}")" -- "$cur"))
            else
                COMPREPLY=($(compgen -W $'list\nfetch' -- "$cur"))
            fi
        elif ((n == 2)); then
            COMPREPLY=($(compgen -W $'score\ntokenize\npreprocess\nembed\nmodels\ninfo\nmerge' -- "$cur")
                $(_clipscore_inputs "$cur"))
        elif [[ $cmd == score ]]; then
            COMPREPLY=($(_clipscore_inputs "$cur"))
        elif [[ $cmd == merge ]]; then
            COMPREPLY=($(compgen -d -- "$cur"))
        elif [[ $cmd != tokenize ]]; then
            COMPREPLY=($(compgen -f -- "$cur"))
        fi
        ;;
    esac
    # A ':' in "hf:ORG/NAME" splits the word for readline; offer only what
    # follows the last one, as bash-completion's helpers do.
    if [[ $cur == *:* && $COMP_WORDBREAKS == *:* ]]; then
        local pre=${cur%"${cur##*:}"}
        COMPREPLY=("${COMPREPLY[@]#"$pre"}")
    fi
}
complete -F _clipscore clipscore
