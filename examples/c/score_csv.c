/* score_csv.c - scores a CSV of image/caption pairs through libclipscore's
 * public API, as a program of your own would. Build against an installed
 * clipscore:
 *
 *     cc score_csv.c $(pkg-config --cflags --libs clipscore) -o score_csv
 *     ./score_csv pairs.csv [MODEL [OUTPUT_DIR]]
 *
 * Writes output.csv and run.json (no figures) and prints the counts. */
#include <clipscore.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s INPUT.csv [MODEL [OUTPUT_DIR]]\n", argv[0]);
        return 2;
    }
    clipscore_params p = clipscore_default_params();
    if (argc > 2) p.model = argv[2];
    p.quiet = 1;
    char err[1024];
    clipscore_context *ctx = clipscore_init(&p, err, sizeof err);
    if (!ctx) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    clipscore_score_params sp = clipscore_default_score_params();
    sp.input_csv = argv[1];
    sp.output_dir = argc > 3 ? argv[3] : NULL;
    sp.figures = 0;
    sp.progress = 0;
    clipscore_score_summary sum;
    int rc = clipscore_score_csv(ctx, &sp, &sum);
    if (rc < 0)
        fprintf(stderr, "%s: %s\n", clipscore_status_name(rc), clipscore_last_error(ctx));
    else
        printf("rows %lld scored %lld failed %lld mean %.6f\n", (long long)sum.rows,
               (long long)sum.scored, (long long)sum.failed, sum.mean_similarity);
    clipscore_free(ctx);
    return rc < 0 ? 1 : sum.failed > 0 ? 3 : 0;
}
