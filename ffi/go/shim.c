// The Go package's C side; see shim.h.

#include <pthread.h>
#include <string.h>

#include "shim.h"
#include "_cgo_export.h"


typedef dlm_status (*last_error_fn)(const void *h, char *buf, size_t len,
                                    size_t *out_n);

static dlm_status client_last_error(const void *h, char *buf, size_t len,
                                    size_t *out_n) {
    return dlm_client_last_error((const dlm_client *)h, buf, len, out_n);
}

static dlm_status lock_last_error(const void *h, char *buf, size_t len,
                                  size_t *out_n) {
    return dlm_lock_last_error((const dlm_lock *)h, buf, len, out_n);
}

// Fills `err` after a call on handle `h` returned `s`; returns `s`.
static dlm_status fail(dlm_status s, const void *h, last_error_fn get,
                       gdlm_err *err) {
    if (s == DLM_OK || err == NULL) {
        return s;
    }
    err->thread = (uintptr_t)pthread_self();
    err->msg = NULL;
    // libdlm records every call's outcome for this thread: the detail of
    // this very failure, or nothing if the status says it all.
    size_t n = 0;
    if (get(h, NULL, 0, &n) != DLM_ERR_BUFFER_TOO_SMALL || n == 0) {
        return s;
    }
    char *msg = malloc(n + 1);
    if (msg != NULL && get(h, msg, n + 1, &n) != DLM_OK) {
        free(msg);
        msg = NULL;
    }
    err->msg = msg;
    return s;
}

static dlm_status options_last_error(const void *h, char *buf, size_t len,
                                     size_t *out_n) {
    return dlm_options_last_error((const dlm_options *)h, buf, len, out_n);
}

dlm_status gdlm_client_new(const char *addr, size_t addr_len,
                           const dlm_options *opts, dlm_client **out,
                           gdlm_err *err) {
    // libdlm keeps why the connection failed on the options.
    return fail(dlm_client_new(addr, addr_len, opts, out), opts,
                options_last_error, err);
}

#define CLIENT(c, err, call) fail((call), (c), client_last_error, (err))
#define LOCK(l, err, call) fail((call), (l), lock_last_error, (err))

dlm_status gdlm_client_test_lock(const dlm_client *c, const char *name,
                                 size_t name_len, dlm_lock_state *state,
                                 uint64_t *token, uint64_t *remaining_ms,
                                 gdlm_err *err) {
    return CLIENT(c, err,
                  dlm_client_test_lock(c, name, name_len, state, token,
                                       remaining_ms));
}

dlm_status gdlm_client_unlock(const dlm_client *c, const char *name,
                              size_t name_len, uint64_t token, gdlm_err *err) {
    return CLIENT(c, err, dlm_client_unlock(c, name, name_len, token));
}

dlm_status gdlm_client_put(const dlm_client *c, const char *name,
                           size_t name_len, const void *value,
                           size_t value_len, uint64_t ttl_ms,
                           uint64_t *revision, gdlm_err *err) {
    return CLIENT(c, err,
                  dlm_client_put(c, name, name_len, value, value_len, ttl_ms,
                                 revision));
}

dlm_status gdlm_client_put_if(const dlm_client *c, const char *name,
                              size_t name_len, const void *value,
                              size_t value_len, uint64_t ttl_ms,
                              uint64_t expected, uint64_t *revision,
                              gdlm_err *err) {
    return CLIENT(c, err,
                  dlm_client_put_if(c, name, name_len, value, value_len,
                                    ttl_ms, expected, revision));
}

dlm_status gdlm_client_get(const dlm_client *c, const char *name,
                           size_t name_len, void *buf, size_t buf_len,
                           size_t *out_len, uint64_t *revision, gdlm_err *err) {
    return CLIENT(c, err,
                  dlm_client_get(c, name, name_len, buf, buf_len, out_len,
                                 revision));
}

dlm_status gdlm_client_erase(const dlm_client *c, const char *name,
                             size_t name_len, gdlm_err *err) {
    return CLIENT(c, err, dlm_client_erase(c, name, name_len));
}

dlm_status gdlm_client_server_version(const dlm_client *c, char *buf,
                                      size_t len, size_t *out_n,
                                      gdlm_err *err) {
    return CLIENT(c, err, dlm_client_server_version(c, buf, len, out_n));
}

dlm_status gdlm_client_stats_json(const dlm_client *c, char *buf, size_t len,
                                  size_t *out_n, gdlm_err *err) {
    return CLIENT(c, err, dlm_client_stats_json(c, buf, len, out_n));
}

// libdlm's lost callback: forward to Go with the handle as an integer.
static void lost_trampoline(void *userdata) {
    goDlmLost((uintptr_t)userdata);
}

dlm_status gdlm_client_lock(const dlm_client *c, const char *name,
                            size_t name_len, uint64_t ttl_ms, uint64_t wait_ms,
                            uint32_t flags, const dlm_cancel *cancel,
                            uintptr_t lost, dlm_lock **out, gdlm_err *err) {
    dlm_lost_fn on_lost = lost != 0 ? lost_trampoline : NULL;
    return CLIENT(c, err,
                  dlm_client_lock(c, name, name_len, ttl_ms, wait_ms, flags,
                                  cancel, on_lost, (void *)lost, out));
}

dlm_status gdlm_lock_extend(const dlm_lock *l, uint64_t ttl_ms,
                            gdlm_err *err) {
    return LOCK(l, err, dlm_lock_extend(l, ttl_ms));
}

dlm_status gdlm_lock_release(const dlm_lock *l, gdlm_err *err) {
    return LOCK(l, err, dlm_lock_release(l));
}

// libdlm's encoder callbacks: forward to Go, saying which direction.
static uint32_t encode_trampoline(void *userdata, const char *name,
                                  size_t name_len, const uint8_t *input,
                                  size_t input_len, uint8_t *out,
                                  size_t out_cap, size_t *out_len) {
    return goDlmCode((uintptr_t)userdata, (uintptr_t)pthread_self(), 0,
                     (uint8_t *)name, name_len,
                     (uint8_t *)input, input_len, out, out_cap, out_len);
}

static uint32_t decode_trampoline(void *userdata, const char *name,
                                  size_t name_len, const uint8_t *input,
                                  size_t input_len, uint8_t *out,
                                  size_t out_cap, size_t *out_len) {
    return goDlmCode((uintptr_t)userdata, (uintptr_t)pthread_self(), 1,
                     (uint8_t *)name, name_len,
                     (uint8_t *)input, input_len, out, out_cap, out_len);
}

dlm_status gdlm_options_set_go_encoder(dlm_options *opts, uintptr_t h) {
    return dlm_options_set_encoder(opts, encode_trampoline, decode_trampoline,
                                   (void *)h);
}
