/* replay_main.c - the main of a harness built without libFuzzer: runs
 * LLVMFuzzerTestOneInput over every file given, or every file in every
 * folder given (sorted, dot-files skipped), so the normal sanitizer build
 * replays the seed corpus and the saved regression inputs.
 *
 * Exit status: 0 when every input ran; 1 for a missing path or when no input
 * was found at all (an empty replay would pass without testing anything).
 * A crash aborts the process, which is the failure CTest sees. */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) buf = realloc(buf, cap *= 2);
    }
    int err = !buf || ferror(f);
    fclose(f);
    if (err) {
        fprintf(stderr, "%s: read failed\n", path);
        free(buf);
        return -1;
    }
    /* An exact-size copy, so ASan catches a read one past the input's end. */
    uint8_t *exact = malloc(len ? len : 1);
    if (len) memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int skip_dots(const struct dirent *d) {
    return d->d_name[0] != '.';
}

int main(int argc, char **argv) {
    LLVMFuzzerInitialize(&argc, &argv);
    long inputs = 0;
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            bad = 1;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            bad |= run_file(argv[i]) != 0;
            inputs++;
            continue;
        }
        struct dirent **names;
        int n = scandir(argv[i], &names, skip_dots, by_name);
        if (n < 0) {
            perror(argv[i]);
            bad = 1;
            continue;
        }
        for (int k = 0; k < n; k++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], names[k]->d_name);
            if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                bad |= run_file(path) != 0;
                inputs++;
            }
            free(names[k]);
        }
        free(names);
    }
    fprintf(stderr, "%s: %ld inputs replayed\n", argv[0], inputs);
    if (!inputs) fprintf(stderr, "%s: no inputs found\n", argv[0]);
    return bad || !inputs ? 1 : 0;
}
