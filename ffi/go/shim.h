/*
 * The Go package's C side: thin wrappers over libdlm that read a failed
 * call's message in the same C call (libdlm keeps it per OS thread, and a
 * goroutine may change threads between two cgo calls), and trampolines that
 * forward libdlm's callbacks to exported Go functions with a cgo.Handle as
 * userdata. No logic lives here beyond that.
 */
#ifndef DLM_GO_SHIM_H
#define DLM_GO_SHIM_H

#include <stdint.h>
#include <stdlib.h>

#include "dlm.h"

/* What a failed call leaves for Go: the message (malloc'ed, or NULL; Go
 * frees it) and the OS thread it ran on (to find a Go encoder's error). */
typedef struct {
    char *msg;
    uintptr_t thread;
} gdlm_err;

/* dlm_client_new, with the reason for a failure read off the options. */
dlm_status gdlm_client_new(const char *addr, size_t addr_len,
                           const dlm_options *opts, dlm_client **out,
                           gdlm_err *err);
dlm_status gdlm_client_test_lock(const dlm_client *c, const char *name,
                                 size_t name_len, dlm_lock_state *state,
                                 uint64_t *token, uint64_t *remaining_ms,
                                 gdlm_err *err);
dlm_status gdlm_client_unlock(const dlm_client *c, const char *name,
                              size_t name_len, uint64_t token, gdlm_err *err);
dlm_status gdlm_client_put(const dlm_client *c, const char *name,
                           size_t name_len, const void *value,
                           size_t value_len, uint64_t ttl_ms,
                           uint64_t *revision, gdlm_err *err);
dlm_status gdlm_client_put_if(const dlm_client *c, const char *name,
                              size_t name_len, const void *value,
                              size_t value_len, uint64_t ttl_ms,
                              uint64_t expected, uint64_t *revision,
                              gdlm_err *err);
dlm_status gdlm_client_get(const dlm_client *c, const char *name,
                           size_t name_len, void *buf, size_t buf_len,
                           size_t *out_len, uint64_t *revision, gdlm_err *err);
dlm_status gdlm_client_erase(const dlm_client *c, const char *name,
                             size_t name_len, gdlm_err *err);
dlm_status gdlm_client_server_version(const dlm_client *c, char *buf,
                                      size_t len, size_t *out_n,
                                      gdlm_err *err);
dlm_status gdlm_client_stats_json(const dlm_client *c, char *buf, size_t len,
                                  size_t *out_n, gdlm_err *err);
/* dlm_client_lock with the Go lost callback; `lost` is a cgo.Handle, or 0
 * for no callback. */
dlm_status gdlm_client_lock(const dlm_client *c, const char *name,
                            size_t name_len, uint64_t ttl_ms, uint64_t wait_ms,
                            uint32_t flags, const dlm_cancel *cancel,
                            uintptr_t lost, dlm_lock **out, gdlm_err *err);

dlm_status gdlm_lock_extend(const dlm_lock *l, uint64_t ttl_ms, gdlm_err *err);
dlm_status gdlm_lock_release(const dlm_lock *l, gdlm_err *err);

/* dlm_options_set_encoder with the Go encoder behind cgo.Handle `h`. */
dlm_status gdlm_options_set_go_encoder(dlm_options *opts, uintptr_t h);

#endif /* DLM_GO_SHIM_H */
