/*
 * The C side of the Go package's cross-language test: a tiny libdlm client.
 *
 *   interop ADDR ID put NAME VALUE   store VALUE, print the revision
 *   interop ADDR ID get NAME         print the value (raw bytes)
 *   interop ADDR ID trylock NAME     one attempt: print "locked TOKEN"
 *                                    (then release) or "not-owner"
 *
 * Exit status 0 on success, 1 on a libdlm failure (reported on stderr),
 * 2 on bad usage.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dlm.h"

static int fail(const char *what, dlm_status s, const dlm_client *c) {
    char msg[512] = "";
    size_t n = 0;
    if (c != NULL) {
        (void)dlm_client_last_error(c, msg, sizeof msg, &n);
    }
    fprintf(stderr, "interop: %s: %s (%u) %s\n", what, dlm_status_string(s),
            (unsigned)s, msg);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: interop ADDR ID put|get|trylock NAME [VALUE]\n");
        return 2;
    }
    const char *addr = argv[1], *id = argv[2], *op = argv[3], *name = argv[4];

    dlm_options *opts = NULL;
    dlm_status s = dlm_options_new(&opts);
    if (s != DLM_OK) return fail("options", s, NULL);
    s = dlm_options_set_client_id(opts, id, strlen(id));
    if (s != DLM_OK) return fail("client id", s, NULL);
    dlm_client *c = NULL;
    s = dlm_client_new(addr, strlen(addr), opts, &c);
    dlm_options_free(opts);
    if (s != DLM_OK) return fail("connect", s, NULL);

    int rc = 0;
    if (strcmp(op, "put") == 0 && argc == 6) {
        uint64_t rev = 0;
        s = dlm_client_put(c, name, strlen(name), argv[5],
                           strlen(argv[5]), 10000, &rev);
        if (s != DLM_OK) rc = fail("put", s, c);
        else printf("%" PRIu64 "\n", rev);
    } else if (strcmp(op, "get") == 0 && argc == 5) {
        uint8_t buf[1024];
        size_t n = 0;
        s = dlm_client_get(c, name, strlen(name), buf, sizeof buf, &n, NULL);
        if (s != DLM_OK) rc = fail("get", s, c);
        else fwrite(buf, 1, n, stdout);
    } else if (strcmp(op, "trylock") == 0 && argc == 5) {
        dlm_lock *l = NULL;
        s = dlm_client_lock(c, name, strlen(name), 10000, 0, 0, NULL,
                            NULL, NULL, &l);
        if (s == DLM_ERR_NOT_OWNER) {
            printf("not-owner\n");
        } else if (s != DLM_OK) {
            rc = fail("lock", s, c);
        } else {
            uint64_t token = 0;
            (void)dlm_lock_token(l, &token);
            printf("locked %" PRIu64 "\n", token);
            s = dlm_lock_release(l);
            if (s != DLM_OK) rc = fail("release", s, c);
            dlm_lock_free(l);
        }
    } else {
        fprintf(stderr, "interop: bad arguments\n");
        rc = 2;
    }
    dlm_client_free(c);
    return rc;
}
