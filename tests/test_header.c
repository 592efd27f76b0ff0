/* test_header.c - the public header alone, compiled as C99 with -pedantic
 * (a consumer's view), and the documented defaults of the params structs. */
#include "clipscore.h"

#include <stdio.h>
#include <string.h>

static int failures;
#define EXPECT(c)                                                                                  \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #c);                        \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

int main(void) {
    char err[1024] = "";
    clipscore_params p = clipscore_default_params();
    EXPECT(strcmp(p.model, "ViT-B/32") == 0);
    EXPECT(strcmp(p.device, "auto") == 0);
    EXPECT(strcmp(p.precision, "auto") == 0);
    EXPECT(p.threads == 0);
    EXPECT(p.max_pixels == 100000000);
    EXPECT(p.offline == 0 && p.quiet == 0);

    clipscore_score_params s = clipscore_default_score_params();
    EXPECT(s.input_csv == NULL && s.output_dir == NULL);
    EXPECT(s.image_column == NULL && s.caption_column == NULL && s.image_root == NULL);
    EXPECT(strcmp(s.caption_template, "{}") == 0);
    EXPECT(s.metric == CLIPSCORE_METRIC_COSINE);
    EXPECT(s.batch_size == 32);
    EXPECT(s.figures == 1 && s.figure_limit == 64 && s.progress == 1);
    EXPECT(s.save_embeddings == NULL);
    EXPECT(s.report == 1 && s.report_pairs == 50);
    EXPECT(s.reference_columns == NULL && s.n_reference_columns == 0);
    EXPECT(s.inputs == NULL && s.n_inputs == 0 && s.image_key == NULL && s.caption_key == NULL);
    EXPECT(s.shard_index == 0 && s.shard_count == 0);
    EXPECT(s.resume == 1 && s.restart == 0);
    EXPECT(s.keep_threshold != s.keep_threshold && s.keep_fraction != s.keep_fraction); /* NaN */
    EXPECT(p.decode == CLIPSCORE_DECODE_EXACT);

    clipscore_merge_params m = clipscore_default_merge_params();
    EXPECT(m.output_dir == NULL && m.parts == NULL && m.n_parts == 0);
    EXPECT(m.keep_threshold != m.keep_threshold && m.keep_fraction != m.keep_fraction);
    EXPECT(m.progress == 1 && m.report == 1 && m.report_pairs == 50);
    /* A merge without parts: refused, with a message. */
    m.output_dir = "/nonexistent/clipscore-merge";
    EXPECT(clipscore_merge(&m, NULL, err, sizeof err) == CLIPSCORE_EARG && err[0]);

    EXPECT(strcmp(clipscore_status_name(CLIPSCORE_EFORMAT), "EFORMAT") == 0);
    EXPECT(strcmp(clipscore_status_name(12345), "UNKNOWN") == 0);

    /* A model that does not exist: NULL and a message naming it. */
    p.model = "/nonexistent/clipscore-model";
    p.offline = 1;
    clipscore_context *ctx = clipscore_init(&p, err, sizeof err);
    EXPECT(ctx == NULL);
    EXPECT(strstr(err, "/nonexistent/clipscore-model") != NULL);
    clipscore_free(NULL); /* allowed */

    fprintf(stderr, "test_header: %d failed\n", failures);
    return failures ? 1 : 0;
}
