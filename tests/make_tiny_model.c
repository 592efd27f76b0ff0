/* make_tiny_model.c - `make_tiny_model DIR [hf|openclip] [seed]`: writes a
 * tiny random CLIP folder for the command-line tests (see tiny_model.h). */
#include <stdio.h>
#include <stdlib.h>

#include "tiny_model.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: make_tiny_model DIR [hf|openclip] [seed]\n");
        return 2;
    }
    tiny_spec s = tiny_default_spec();
    cs_error e = {0};
    if (tiny_model_write(argv[1], argc > 2 ? argv[2] : "hf", &s,
                         argc > 3 ? (unsigned)atoi(argv[3]) : 1, 0, &e)) {
        fprintf(stderr, "make_tiny_model: %s\n", e.msg);
        return 1;
    }
    return 0;
}
