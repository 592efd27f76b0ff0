/* main.c - the clipscore command line: a thin client of include/clipscore.h.
 *
 *   clipscore [score] INPUT... [options]    score pairs (the main job)
 *   clipscore merge -o OUT PART...           join the parts of a sharded run
 *   clipscore tokenize | preprocess | embed  inspection commands
 *   clipscore models [list | fetch NAME]     known models and the cache
 *
 * The only file that exits. Exit status: 0 every row scored; 3 outputs
 * written but some rows failed; 2 usage error; 1 fatal error. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipscore.h"

enum { EXIT_OK = 0, EXIT_FATAL = 1, EXIT_USAGE = 2, EXIT_PARTIAL = 3 };

/* The usage text; defaults come from the library's defaults functions so
 * the two cannot drift apart. */
static void print_usage(FILE *out) {
    clipscore_params p = clipscore_default_params();
    clipscore_score_params s = clipscore_default_score_params();
    fprintf(out,
            "usage: clipscore [score] INPUT... [options]   (CSV, - for stdin, .tar shard, folder)\n"
            "       clipscore merge      -o OUT PART_DIR... [--keep-threshold T] "
            "[--keep-fraction F]\n"
            "       clipscore tokenize   --model M [--jsonl] [TEXT...]      (stdin when no TEXT)\n"
            "       clipscore preprocess --model M -o OUT.npy IMAGE...\n"
            "       clipscore embed      --model M -o OUT.npy (--images IMAGE... | --texts FILE "
            "[--jsonl])\n"
            "       clipscore models     [list | fetch NAME]\n"
            "       clipscore info       --model M\n"
            "\n"
            "Scores how well each caption matches its image with CLIP (cosine similarity of\n"
            "the image and text embeddings). Inputs are CSVs, webdataset tar shards (KEY.jpg +\n"
            "KEY.txt [+ KEY.json]) or img2dataset folders; several are one run, in order.\n"
            "Writes, beside the first input unless -o is given (in the current folder when\n"
            "the input is - or a pipe):\n"
            "  output.csv             the input, unchanged, plus `similarity` and `error` columns\n"
            "  run.json               model, weight SHA-256, device, counts, timings, outputs\n"
            "  image_captions.jpg     each image with its caption and score\n"
            "  similarity_matrix.jpg  every image against every caption\n"
            "  report.html            summary, histogram, lowest and highest pairs, failed rows\n"
            "\n"
            "Options (defaults in brackets):\n"
            "  -m, --model M          ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14@336px, RN50, RN101,\n"
            "                         RN50x4, RN50x16, RN50x64, hf:ORG/NAME[@REV],\n"
            "                         a CLIPSCORE_REGISTRY name, or a local folder/file [%s]\n"
            "      --device D         auto, cpu, cuda, cuda:N [%s: cuda when available]\n"
            "      --precision P      auto, fp32, fp16, bf16 [%s: fp32 on CPU, fp16 on CUDA]\n"
            "  -b, --batch-size N     pairs per encoder batch [%d]\n"
            "  -t, --threads N        worker threads [number of cores]\n"
            "  -o, --output DIR       output folder [the input's folder]\n"
            "      --image-column C   image column name or #N [detected: image, image_path, "
            "filepath, ...]\n"
            "      --caption-column C caption column name or #N [detected: caption, text, title, "
            "...]\n"
            "      --image-root DIR   folder for relative image paths [the input's folder]\n"
            "      --template T       caption template, {} is the caption, e.g. \"This is {}\" "
            "[%s]\n"
            "      --metric M         cosine, or clipscore to add clipscore = 2.5*max(cos,0) "
            "[%s]\n"
            "      --reference-column C  a reference caption column (repeatable): adds clipscore\n"
            "                         and refclipscore (RefCLIPScore, Hessel et al. 2021)\n"
            "      --save-embeddings DIR  write image_embeddings.npy, text_embeddings.npy "
            "(L2-normalised)\n"
            "      --no-figures       do not draw the two JPEG figures\n"
            "      --figure-limit N   pairs shown in the figures [%d]\n"
            "      --no-report        do not write report.html\n"
            "      --report-pairs N   lowest and highest pairs (and failed rows) in the report "
            "[%d]\n"
            "      --max-pixels N     refuse larger images [%lld]\n"
            "      --decode D         exact (as the reference), or fast: large JPEGs decoded at\n"
            "                         1/2, 1/4 or 1/8 size, then resized as usual [%s]\n"
            "      --image-key EXT    tars/folders: the image member [jpg, jpeg, png, webp, ...]\n"
            "      --caption-key EXT  tars/folders: the caption member [txt]\n"
            "      --shard K/N        score share K of N (0 <= K < N) into -o DIR, for clipscore\n"
            "                         merge; 'slurm': K and N from the Slurm job array\n"
            "      --keep-threshold T write kept.csv: rows with similarity >= T\n"
            "      --keep-fraction F  write kept.csv: the top fraction F of scored rows\n"
            "      --restart          discard a stopped run's journal and start over\n"
            "      --no-resume        keep no journal (a stopped run starts over)\n"
            "      --offline          never use the network (also CLIPSCORE_OFFLINE=1)\n"
            "  -q, --quiet            no progress or summary on stderr\n"
            "  -h, --help             this text\n"
            "      --version          version and libtorch build\n"
            "\n"
            "Exit status: 0 every row scored; 3 outputs written but some rows failed;\n"
            "2 usage error; 1 fatal error (nothing replaced); 130 interrupted (nothing "
            "replaced).\n",
            p.model, p.device, p.precision, s.batch_size, s.caption_template,
            s.metric == CLIPSCORE_METRIC_CLIPSCORE ? "clipscore" : "cosine", s.figure_limit,
            s.report_pairs, (long long)p.max_pixels,
            p.decode == CLIPSCORE_DECODE_FAST ? "fast" : "exact");
}

typedef struct cli {
    const char *command;
    clipscore_params params;
    clipscore_score_params score;
    const char *output; /* -o for the inspection commands */
    int jsonl;
    int images_mode, texts_mode;
    const char *texts_file;
    const char **positional;
    int n_positional;
    const char **references; /* --reference-column values [argc] */
    clipscore_merge_params merge;
} cli;

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "clipscore: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'clipscore --help'.\n");
    return EXIT_USAGE;
}

static int parse_int(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "clipscore: %s expects a number from %ld to %ld, not '%s'\n", opt, lo, hi,
                s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_fraction(const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "clipscore: %s expects a number from %g to %g, not '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* --shard K/N, or "slurm": this task of a Slurm job array (its index less
 * the array's first, out of the array's task count). */
static int parse_shard(const char *s, int *k, int *n) {
    long kk, nn;
    if (strcmp(s, "slurm") == 0) {
        const char *id = getenv("SLURM_ARRAY_TASK_ID"), *min = getenv("SLURM_ARRAY_TASK_MIN");
        const char *count = getenv("SLURM_ARRAY_TASK_COUNT");
        if (!id || !*id || !min || !*min || !count || !*count) {
            fprintf(stderr, "clipscore: --shard slurm: not in a Slurm job array "
                            "(SLURM_ARRAY_TASK_ID, _MIN and _COUNT are not all set); "
                            "submit with sbatch --array, or give --shard K/N\n");
            return -1;
        }
        long id_v, min_v;
        if (parse_int("SLURM_ARRAY_TASK_ID", id, 0, 100000000, &id_v) ||
            parse_int("SLURM_ARRAY_TASK_MIN", min, 0, 100000000, &min_v) ||
            parse_int("SLURM_ARRAY_TASK_COUNT", count, 1, 100000000, &nn))
            return -1;
        kk = id_v - min_v;
        if (kk < 0 || kk >= nn) {
            fprintf(stderr,
                    "clipscore: --shard slurm: task %ld of an array starting at %ld with %ld "
                    "tasks is out of range: use a contiguous --array (e.g. 0-%ld), or "
                    "--shard K/N\n",
                    id_v, min_v, nn, nn - 1);
            return -1;
        }
        fprintf(stderr, "clipscore: --shard slurm: shard %ld/%ld (array task %ld, first %ld)\n", kk,
                nn, id_v, min_v);
    } else {
        char extra;
        if (sscanf(s, "%ld/%ld%c", &kk, &nn, &extra) != 2 || nn < 1 || nn > 100000000 || kk < 0 ||
            kk >= nn) {
            fprintf(stderr,
                    "clipscore: --shard expects K/N with 0 <= K < N (e.g. 0/4), or slurm, "
                    "not '%s'\n",
                    s);
            return -1;
        }
    }
    *k = (int)kk;
    *n = (int)nn;
    return 0;
}

/* Parses argv into c; returns -1 to exit with usage error, 1 for --help/--version. */
static int parse_args(int argc, char **argv, cli *c) {
    memset(c, 0, sizeof *c);
    c->params = clipscore_default_params();
    c->score = clipscore_default_score_params();
    c->merge = clipscore_default_merge_params();
    c->command = "score";
    c->positional = calloc((size_t)argc, sizeof *c->positional);
    c->references = calloc((size_t)argc, sizeof *c->references);
    if (!c->positional || !c->references) return -1;
    c->score.reference_columns = c->references;
    int i = 1;
    static const char *const commands[] = {"score",  "tokenize", "preprocess", "embed",
                                           "models", "info",     "merge"};
    if (argc > 1)
        for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
            if (strcmp(argv[1], commands[k]) == 0) {
                c->command = commands[k];
                i = 2;
            }
    for (; i < argc; i++) {
        char *a = argv[i];
        if (a[0] != '-' || strcmp(a, "-") == 0) {
            c->positional[c->n_positional++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            while (++i < argc) c->positional[c->n_positional++] = argv[i];
            break;
        }
        /* --opt=value or --opt value */
        char name[64];
        const char *val = NULL;
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        if (eq) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
            val = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", a);
        }
#define FLAG(s) (strcmp(name, s) == 0)
#define VALUE()                                                                                    \
    (val ? val                                                                                     \
         : (i + 1 < argc ? argv[++i]                                                               \
                         : (usage_error("option %s needs a value", name), (char *)NULL)))
        long n;
        if (FLAG("-h") || FLAG("--help")) {
            print_usage(stdout);
            return 1;
        } else if (FLAG("--version")) {
            return 2;
        } else if (FLAG("-q") || FLAG("--quiet")) {
            c->params.quiet = 1;
            c->score.progress = 0;
        } else if (FLAG("--no-figures")) {
            c->score.figures = 0;
        } else if (FLAG("--no-report")) {
            c->score.report = 0;
        } else if (FLAG("--offline")) {
            c->params.offline = 1;
        } else if (FLAG("--jsonl")) {
            c->jsonl = 1;
        } else if (FLAG("--images")) {
            c->images_mode = 1;
        } else if (FLAG("--texts")) {
            c->texts_mode = 1;
            if (!(c->texts_file = VALUE())) return -1;
        } else if (FLAG("-m") || FLAG("--model")) {
            if (!(c->params.model = VALUE())) return -1;
        } else if (FLAG("--device")) {
            if (!(c->params.device = VALUE())) return -1;
        } else if (FLAG("--precision")) {
            if (!(c->params.precision = VALUE())) return -1;
        } else if (FLAG("-o") || FLAG("--output")) {
            if (!(c->output = VALUE())) return -1;
            c->score.output_dir = c->output;
        } else if (FLAG("--image-column")) {
            if (!(c->score.image_column = VALUE())) return -1;
        } else if (FLAG("--caption-column")) {
            if (!(c->score.caption_column = VALUE())) return -1;
        } else if (FLAG("--reference-column")) {
            if (!(c->references[c->score.n_reference_columns++] = VALUE())) return -1;
        } else if (FLAG("--image-root")) {
            if (!(c->score.image_root = VALUE())) return -1;
        } else if (FLAG("--template")) {
            if (!(c->score.caption_template = VALUE())) return -1;
            if (!strstr(c->score.caption_template, "{}")) {
                usage_error("--template '%s' has no {} for the caption", c->score.caption_template);
                return -1;
            }
        } else if (FLAG("--decode")) {
            const char *m = VALUE();
            if (!m) return -1;
            if (strcmp(m, "exact") == 0)
                c->params.decode = CLIPSCORE_DECODE_EXACT;
            else if (strcmp(m, "fast") == 0)
                c->params.decode = CLIPSCORE_DECODE_FAST;
            else {
                usage_error("--decode %s: expected exact or fast", m);
                return -1;
            }
        } else if (FLAG("--metric")) {
            const char *m = VALUE();
            if (!m) return -1;
            if (strcmp(m, "cosine") == 0)
                c->score.metric = CLIPSCORE_METRIC_COSINE;
            else if (strcmp(m, "clipscore") == 0)
                c->score.metric = CLIPSCORE_METRIC_CLIPSCORE;
            else {
                usage_error("--metric %s: expected cosine or clipscore", m);
                return -1;
            }
        } else if (FLAG("--save-embeddings")) {
            if (!(c->score.save_embeddings = VALUE())) return -1;
        } else if (FLAG("-b") || FLAG("--batch-size")) {
            const char *v = VALUE();
            if (!v || parse_int(name, v, 1, 4096, &n)) return -1;
            c->score.batch_size = (int)n;
        } else if (FLAG("-t") || FLAG("--threads")) {
            const char *v = VALUE();
            if (!v || parse_int(name, v, 1, 1024, &n)) return -1;
            c->params.threads = (int)n;
        } else if (FLAG("--figure-limit")) {
            const char *v = VALUE();
            if (!v || parse_int(name, v, 1, 1024, &n)) return -1;
            c->score.figure_limit = (int)n;
        } else if (FLAG("--report-pairs")) {
            const char *v = VALUE();
            if (!v || parse_int(name, v, 1, 1000, &n)) return -1;
            c->score.report_pairs = (int)n;
        } else if (FLAG("--image-key")) {
            if (!(c->score.image_key = VALUE())) return -1;
        } else if (FLAG("--caption-key")) {
            if (!(c->score.caption_key = VALUE())) return -1;
        } else if (FLAG("--shard")) {
            const char *v = VALUE();
            if (!v || parse_shard(v, &c->score.shard_index, &c->score.shard_count)) return -1;
        } else if (FLAG("--keep-threshold")) {
            const char *v = VALUE();
            if (!v || parse_fraction(name, v, -1, 1, &c->score.keep_threshold)) return -1;
            c->merge.keep_threshold = c->score.keep_threshold;
        } else if (FLAG("--keep-fraction")) {
            const char *v = VALUE();
            if (!v || parse_fraction(name, v, 1e-9, 1, &c->score.keep_fraction)) return -1;
            c->merge.keep_fraction = c->score.keep_fraction;
        } else if (FLAG("--restart")) {
            c->score.restart = 1;
        } else if (FLAG("--no-resume")) {
            c->score.resume = 0;
        } else if (FLAG("--max-pixels")) {
            const char *v = VALUE();
            if (!v || parse_int(name, v, 1, 2000000000L, &n)) return -1;
            c->params.max_pixels = n;
        } else {
            usage_error("unknown option %s", a);
            return -1;
        }
#undef FLAG
#undef VALUE
    }
    return 0;
}

/* One text per line of f; with jsonl each line is a JSON string. Returns the
 * count, or -1 with a message. *texts is a malloc'd array of malloc'd strings. */
static long read_texts(FILE *f, const char *label, int jsonl, char ***texts) {
    size_t cap = 0, n = 0;
    char **v = NULL, *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    long lineno = 0;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        char *s;
        if (jsonl) {
            if (len == 0) continue;
            cJSON *j = cJSON_ParseWithLength(line, (size_t)len);
            if (!cJSON_IsString(j)) {
                fprintf(stderr, "clipscore: %s:%ld: expected a JSON string\n", label, lineno);
                cJSON_Delete(j);
                goto fail;
            }
            s = strdup(j->valuestring);
            cJSON_Delete(j);
        } else {
            s = strdup(line);
        }
        if (!s) goto fail;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            char **nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                free(s);
                goto fail;
            }
            v = nv;
        }
        v[n++] = s;
    }
    free(line);
    *texts = v;
    return (long)n;
fail:
    free(line);
    for (size_t k = 0; k < n; k++) free(v[k]);
    free(v);
    return -1;
}

static void free_texts(char **t, long n) {
    for (long i = 0; i < n; i++) free(t[i]);
    free(t);
}

static clipscore_context *open_context(cli *c) {
    char err[1024];
    clipscore_context *ctx = clipscore_init(&c->params, err, sizeof err);
    if (!ctx) fprintf(stderr, "clipscore: %s\n", err);
    return ctx;
}

static int cmd_tokenize(cli *c) {
    clipscore_context *ctx = open_context(c);
    if (!ctx) return EXIT_FATAL;
    char **texts = NULL;
    long n;
    if (c->n_positional) {
        n = c->n_positional;
        texts = calloc((size_t)n, sizeof *texts);
        for (long i = 0; texts && i < n; i++) texts[i] = strdup(c->positional[i]);
    } else {
        n = read_texts(stdin, "stdin", c->jsonl, &texts);
    }
    int rc = n < 0 || !texts ? EXIT_FATAL : EXIT_OK;
    clipscore_model_info info;
    clipscore_get_model_info(ctx, &info);
    int32_t *ids = malloc((size_t)info.context_length * sizeof *ids);
    for (long i = 0; rc == EXIT_OK && ids && i < n; i++) {
        int k;
        if (clipscore_tokenize(ctx, texts[i], ids, info.context_length, &k, NULL)) {
            fprintf(stderr, "clipscore: text %ld: %s\n", i + 1, clipscore_last_error(ctx));
            rc = EXIT_FATAL;
            break;
        }
        for (int j = 0; j < k; j++) printf(j ? " %d" : "%d", ids[j]);
        putchar('\n');
    }
    free(ids);
    if (texts) free_texts(texts, n);
    clipscore_free(ctx);
    return rc;
}

static int write_npy(const char *path, const float *data, int ndim, const int64_t *shape) {
    char err[1024];
    if (clipscore_write_npy(path, data, ndim, shape, err, sizeof err)) {
        fprintf(stderr, "clipscore: %s\n", err);
        return EXIT_FATAL;
    }
    return EXIT_OK;
}

static int cmd_preprocess(cli *c) {
    if (!c->output || !c->n_positional)
        return usage_error("%s", "preprocess needs -o OUT.npy and images");
    clipscore_context *ctx = open_context(c);
    if (!ctx) return EXIT_FATAL;
    clipscore_model_info info;
    clipscore_get_model_info(ctx, &info);
    size_t per = 3 * (size_t)info.image_size * (size_t)info.image_size;
    float *px = malloc((size_t)c->n_positional * per * sizeof *px);
    int rc = px ? EXIT_OK : EXIT_FATAL;
    for (int i = 0; rc == EXIT_OK && i < c->n_positional; i++) {
        if (clipscore_preprocess_image(ctx, c->positional[i], px + (size_t)i * per)) {
            fprintf(stderr, "clipscore: %s\n", clipscore_last_error(ctx));
            rc = EXIT_FATAL;
        }
    }
    if (rc == EXIT_OK) {
        int64_t shape[4] = {c->n_positional, 3, info.image_size, info.image_size};
        rc = write_npy(c->output, px, 4, shape);
    }
    free(px);
    clipscore_free(ctx);
    return rc;
}

static int cmd_embed(cli *c) {
    if (!c->output || c->images_mode == c->texts_mode)
        return usage_error("%s",
                           "embed needs -o OUT.npy and either --images IMAGE... or --texts FILE");
    clipscore_context *ctx = open_context(c);
    if (!ctx) return EXIT_FATAL;
    clipscore_model_info info;
    clipscore_get_model_info(ctx, &info);
    const int batch = c->score.batch_size > 0 ? c->score.batch_size : 32;
    const size_t d = (size_t)info.embed_dim, per = 3 * (size_t)info.image_size * info.image_size;
    int rc = EXIT_OK;
    float *emb = NULL;
    long n = 0;
    if (c->images_mode) {
        n = c->n_positional;
        emb = malloc((size_t)(n ? n : 1) * d * sizeof *emb);
        float *px = malloc((size_t)batch * per * sizeof *px);
        if (!emb || !px) rc = EXIT_FATAL;
        for (long i = 0; rc == EXIT_OK && i < n; i += batch) {
            int k = (int)(n - i < batch ? n - i : batch);
            for (int j = 0; rc == EXIT_OK && j < k; j++)
                if (clipscore_preprocess_image(ctx, c->positional[i + j], px + (size_t)j * per))
                    rc = EXIT_FATAL;
            if (rc == EXIT_OK && clipscore_encode_images(ctx, px, k, emb + (size_t)i * d))
                rc = EXIT_FATAL;
        }
        free(px);
    } else {
        FILE *f = strcmp(c->texts_file, "-") == 0 ? stdin : fopen(c->texts_file, "rb");
        char **texts = NULL;
        if (!f) {
            fprintf(stderr, "clipscore: %s: %s\n", c->texts_file, strerror(errno));
            clipscore_free(ctx);
            return EXIT_FATAL;
        }
        n = read_texts(f, c->texts_file, c->jsonl, &texts);
        if (f != stdin) fclose(f);
        if (n < 0)
            rc = EXIT_FATAL;
        else
            emb = malloc((size_t)(n ? n : 1) * d * sizeof *emb);
        if (n >= 0 && !emb) rc = EXIT_FATAL;
        for (long i = 0; rc == EXIT_OK && i < n; i += batch) {
            int k = (int)(n - i < batch ? n - i : batch);
            if (clipscore_encode_texts(ctx, (const char *const *)texts + i, k, emb + (size_t)i * d,
                                       NULL))
                rc = EXIT_FATAL;
        }
        if (n >= 0) free_texts(texts, n);
    }
    if (rc != EXIT_OK && clipscore_last_error(ctx)[0])
        fprintf(stderr, "clipscore: %s\n", clipscore_last_error(ctx));
    if (rc == EXIT_OK) {
        int64_t shape[2] = {n, (int64_t)d};
        rc = write_npy(c->output, emb, 2, shape);
    }
    free(emb);
    clipscore_free(ctx);
    return rc;
}

static int cmd_info(cli *c) {
    clipscore_context *ctx = open_context(c);
    if (!ctx) return EXIT_FATAL;
    clipscore_model_info m;
    clipscore_get_model_info(ctx, &m);
    int st[4];
    char image[160];
    if (clipscore_get_vision_stages(ctx, st) > 0)
        snprintf(image, sizeof image,
                 "%d px, ResNet, stages [%d, %d, %d, %d], width %d, attention pool %d wide, "
                 "%d heads",
                 m.image_size, st[0], st[1], st[2], st[3], m.vision_width, 32 * m.vision_width,
                 m.vision_heads);
    else
        snprintf(image, sizeof image, "%d px, patch %d, width %d, %d layers, %d heads",
                 m.image_size, m.patch_size, m.vision_width, m.vision_layers, m.vision_heads);
    printf("model        %s\npath         %s\nlayout       %s\nweights      %s\n"
           "device       %s\nprecision    %s\nimage        %s\n"
           "text         context %d, vocab %d, width %d, %d layers, %d heads\n"
           "embedding    %d\nactivation   %s\n",
           m.name, m.path, m.layout, m.weights_file, m.device, m.precision, image, m.context_length,
           m.vocab_size, m.text_width, m.text_layers, m.text_heads, m.embed_dim,
           m.quick_gelu ? "quick_gelu" : "gelu");
    clipscore_free(ctx);
    return EXIT_OK;
}

static int cmd_models(cli *c) {
    char err[1024];
    int rc;
    if (c->n_positional == 0 || strcmp(c->positional[0], "list") == 0) {
        rc = clipscore_models_list(stdout, &c->params, err, sizeof err);
    } else if (strcmp(c->positional[0], "fetch") == 0) {
        if (c->n_positional < 2) return usage_error("%s", "models fetch needs a model NAME");
        rc = 0;
        for (int i = 1; !rc && i < c->n_positional; i++) {
            char where[4096];
            rc = clipscore_models_fetch(c->positional[i], &c->params, where, sizeof where, err,
                                        sizeof err);
            if (!rc) printf("%s\t%s\n", c->positional[i], where);
        }
    } else {
        return usage_error("models: unknown action '%s' (list, fetch NAME)", c->positional[0]);
    }
    if (rc) {
        fprintf(stderr, "clipscore: %s\n", err);
        return EXIT_FATAL;
    }
    return EXIT_OK;
}

/* Ctrl-C (or SIGTERM) during a run: the first asks the scorer to stop
 * cleanly, removing its temporary files; a second one ends the process. */
static clipscore_context *running;

static void on_signal(int sig) {
    static volatile sig_atomic_t seen;
    if (seen++ || !running) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    clipscore_cancel(running);
}

static int cmd_score(cli *c) {
    if (c->n_positional == 0) return usage_error("%s", "no input given");
    if (c->score.shard_count > 0 && !c->score.output_dir)
        return usage_error("%s", "--shard needs -o DIR: each share's part goes to its own folder");
    c->score.input_csv = c->positional[0];
    c->score.inputs = c->positional;
    c->score.n_inputs = c->n_positional;
    clipscore_context *ctx = open_context(c);
    if (!ctx) return EXIT_FATAL;
    clipscore_score_summary sum;
    running = ctx;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    int rc = clipscore_score_csv(ctx, &c->score, &sum);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    running = NULL;
    if (rc < 0) {
        fprintf(stderr, "clipscore: %s\n", clipscore_last_error(ctx));
        clipscore_free(ctx);
        if (rc == CLIPSCORE_ECANCELED) return 128 + SIGINT;
        return rc == CLIPSCORE_EARG ? EXIT_USAGE : EXIT_FATAL;
    }
    clipscore_free(ctx);
    return sum.failed > 0 ? EXIT_PARTIAL : EXIT_OK;
}

static int cmd_merge(cli *c) {
    if (!c->output || !c->n_positional)
        return usage_error("%s", "merge needs -o OUT and the parts' folders");
    c->merge.output_dir = c->output;
    c->merge.parts = c->positional;
    c->merge.n_parts = c->n_positional;
    c->merge.progress = c->score.progress;
    c->merge.report = c->score.report;
    c->merge.report_pairs = c->score.report_pairs;
    char err[1024];
    clipscore_score_summary sum;
    int rc = clipscore_merge(&c->merge, &sum, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "clipscore: %s\n", err);
        return rc == CLIPSCORE_EARG ? EXIT_USAGE : EXIT_FATAL;
    }
    return sum.failed > 0 ? EXIT_PARTIAL : EXIT_OK;
}

int main(int argc, char **argv) {
    cli c;
    int p = parse_args(argc, argv, &c);
    int rc;
    if (p < 0)
        rc = EXIT_USAGE;
    else if (p == 1)
        rc = EXIT_OK;
    else if (p == 2) {
        printf("%s\n", clipscore_build_info());
        rc = EXIT_OK;
    } else if (argc < 2) {
        print_usage(stderr);
        rc = EXIT_USAGE;
    } else if (strcmp(c.command, "tokenize") == 0)
        rc = cmd_tokenize(&c);
    else if (strcmp(c.command, "preprocess") == 0)
        rc = cmd_preprocess(&c);
    else if (strcmp(c.command, "embed") == 0)
        rc = cmd_embed(&c);
    else if (strcmp(c.command, "models") == 0)
        rc = cmd_models(&c);
    else if (strcmp(c.command, "info") == 0)
        rc = cmd_info(&c);
    else if (strcmp(c.command, "merge") == 0)
        rc = cmd_merge(&c);
    else
        rc = cmd_score(&c);
    free(c.positional);
    free(c.references);
    return rc;
}
