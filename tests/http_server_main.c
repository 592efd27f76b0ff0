/* http_server_main.c - the test HTTP server as a program, for shell tests:
 *
 *     test_http_server DIR [--hub] [--ignore-range] [--cut-after N [--cut-times K]]
 *                          [--delay-ms N] [--timeout S] [--log]
 *
 * prints the port ("PORT\n") on stdout, then serves DIR on 127.0.0.1 until
 * stdin reaches end of file or S seconds (default 300) pass. --log writes
 * the request log to stderr at the end. Leaves out everything but startup
 * and shutdown; the server itself is http_server.c. Example (bash):
 *
 *     coproc SRV { ./test_http_server fixtures; }
 *     read -r PORT <&"${SRV[0]}"
 *     ... curl http://127.0.0.1:$PORT/file ...
 *     exec {SRV[1]}>&-; wait "$SRV_PID"
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_server.h"
#include "util.h"

static int usage(void) {
    fprintf(stderr, "usage: test_http_server DIR [--hub] [--ignore-range] [--cut-after N "
                    "[--cut-times K]] [--delay-ms N] [--timeout S] [--log]\n");
    return 2;
}

int main(int argc, char **argv) {
    http_server_opts o;
    memset(&o, 0, sizeof o);
    int timeout = 300, log = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (strcmp(a, "--hub") == 0)
            o.hub = 1;
        else if (strcmp(a, "--ignore-range") == 0)
            o.ignore_range = 1;
        else if (strcmp(a, "--log") == 0)
            log = 1;
        else if (strcmp(a, "--cut-after") == 0 && more) {
            o.cut_after = atoll(argv[++i]);
            if (o.cut_times == 0) o.cut_times = 1;
        } else if (strcmp(a, "--cut-times") == 0 && more)
            o.cut_times = atoi(argv[++i]);
        else if (strcmp(a, "--delay-ms") == 0 && more)
            o.delay_ms = atoi(argv[++i]);
        else if (strcmp(a, "--timeout") == 0 && more)
            timeout = atoi(argv[++i]);
        else if (a[0] != '-' && !o.root)
            o.root = a;
        else
            return usage();
    }
    if (!o.root || timeout <= 0) return usage();
    if (!cs_is_dir(o.root)) {
        fprintf(stderr, "test_http_server: %s is not a folder\n", o.root);
        return 1;
    }
    /* The server gives up a little after us, so we are the ones who stop it. */
    o.max_seconds = timeout + 5;
    http_server *s = http_server_start(&o);
    if (!s) return 1;
    printf("%d\n", http_server_port(s));
    fflush(stdout);

    double end = cs_now() + timeout;
    for (;;) {
        double left = end - cs_now();
        if (left <= 0) break;
        struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
        int r = poll(&p, 1, left > 1 ? 1000 : (int)(left * 1000) + 1);
        if (r < 0 && errno != EINTR) break;
        if (r > 0) {
            char buf[256];
            ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
            if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) break; /* closed */
        }
    }
    http_server_stop(s);
    if (log) {
        int n = http_server_nrequests(s);
        for (int i = 0; i < n; i++) {
            http_request rq;
            if (http_server_request(s, i, &rq) == 0)
                fprintf(stderr, "%s %s%s%s range=%lld\n", rq.method, rq.path,
                        rq.query[0] ? "?" : "", rq.query, rq.range_start);
        }
    }
    http_server_free(s);
    return 0;
}
