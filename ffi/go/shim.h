/*
 * The Go package's C side: thin wrappers over libdlm's sans-I/O calls
 * (dlm_wire, dlm_lease) that
 *   - take a request's fields as arguments and build the dlm_request on the
 *     C stack (Go may pass pointers to Go memory as arguments, but not Go
 *     memory that holds them), and
 *   - read a failed call's detail in the same C call: libdlm keeps it per
 *     OS thread, and a goroutine may change threads between two cgo calls.
 * No logic lives here beyond that; none of these calls blocks.
 */
#ifndef DLM_GO_SHIM_H
#define DLM_GO_SHIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "dlm.h"

/* What a failed call leaves for Go: its detail (malloc'ed, or NULL; Go
 * frees it). */
typedef struct {
    char *msg;
} gdlm_err;

/* A request's fields (see dlm_request). Its lists (a multi-lock's names,
 * a shared put's readers) come as one buffer of the texts one after the
 * other and their lengths: the shim points dlm_request at each (Go may not
 * pass memory holding pointers). */
#define GDLM_REQUEST_ARGS                                                     \
    uint32_t call, uint32_t flags, const char *name, size_t name_len,         \
        const void *value, size_t value_len, uint64_t ttl_ms,                 \
        uint64_t wait_ms, uint64_t token, uint64_t revision, uint32_t permits, \
        uint64_t lock_delay_ms, const char *names, const size_t *name_lens,   \
        size_t names_count, const char *readers, const size_t *reader_lens,   \
        size_t readers_count

dlm_status gdlm_wire_write(const dlm_wire *w, GDLM_REQUEST_ARGS, char *buf,
                           size_t len, size_t *out_n, gdlm_err *err);
dlm_status gdlm_wire_read(const dlm_wire *w, GDLM_REQUEST_ARGS,
                          const char *line, size_t line_len, void *data,
                          size_t data_cap, dlm_answer *out, gdlm_err *err);
/* An event as dlm_wire_event reads it, its text given by offsets into the
 * caller's data buffer rather than pointers (Go memory must not come back
 * holding pointers written by C). */
typedef struct {
    uint64_t revision, token, data_revision;
    uint32_t what, kind, has, permits;
    size_t name_off, name_len, owner_off, owner_len, value_off, value_len;
} gdlm_event;

/* dlm_wire_event: one line of a watching connection. */
dlm_status gdlm_wire_event(const dlm_wire *w, uint32_t flags, const char *line,
                           size_t line_len, void *data, size_t data_cap,
                           gdlm_event *out, size_t *out_needed, gdlm_err *err);
dlm_status gdlm_wire_id(const dlm_wire *w, char *buf, size_t len,
                        size_t *out_n);
dlm_status gdlm_lease_new(const dlm_wire *w, GDLM_REQUEST_ARGS,
                          uint64_t sent_ms, uint64_t now_ms, const char *line,
                          size_t line_len, dlm_lease **out, gdlm_err *err);
/* dlm_lease_new_all: one lease per name of a multi-lock, into out (cap). */
dlm_status gdlm_lease_new_all(const dlm_wire *w, GDLM_REQUEST_ARGS,
                              uint64_t sent_ms, uint64_t now_ms,
                              const char *line, size_t line_len,
                              dlm_lease **out, size_t cap, gdlm_err *err);
/* dlm_wire_owner: whose value a get's answer carries. */
dlm_status gdlm_wire_owner(const dlm_wire *w, GDLM_REQUEST_ARGS,
                           const char *line, size_t line_len, char *buf,
                           size_t len, size_t *out_n, gdlm_err *err);
dlm_status gdlm_lease_extend(dlm_lease *l, uint64_t now_ms, uint64_t ttl_ms,
                             gdlm_err *err);
dlm_status gdlm_lease_poll_request(dlm_lease *l, const dlm_wire *w,
                                   uint64_t now_ms, char *buf, size_t len,
                                   size_t *out_n, dlm_lease_action *out_action,
                                   gdlm_err *err);
dlm_status gdlm_lease_handle_response(dlm_lease *l, uint64_t now_ms,
                                      const char *line, size_t line_len,
                                      dlm_lease_done *out_done,
                                      dlm_lease_info *out_info, gdlm_err *err);
/* dlm_lease_handle_timeout then dlm_lease_inspect: a lease's state now. */
dlm_status gdlm_lease_state(dlm_lease *l, uint64_t now_ms,
                            dlm_lease_info *out);
/* dlm_lease_handle_failure then dlm_lease_inspect. */
dlm_status gdlm_lease_failed(dlm_lease *l, uint64_t now_ms,
                             dlm_lease_info *out);

/* dlm_failover: the failover machine (see failover.go). Each reports a
 * failure's detail (a give-up's reason) as the calls above do. */
dlm_status gdlm_failover_new(const char *servers, size_t servers_len,
                             uint32_t no_discovery, const uint8_t *seed,
                             dlm_failover **out, gdlm_err *err);
dlm_status gdlm_failover_start(dlm_failover *f, const dlm_wire *w,
                               GDLM_REQUEST_ARGS, uint64_t now_ms,
                               uint64_t timeout_ms, dlm_failover_call **out,
                               gdlm_err *err);
dlm_status gdlm_failover_start_lease(dlm_failover *f, dlm_lease *l,
                                     const dlm_wire *w, uint64_t now_ms,
                                     uint64_t timeout_ms,
                                     dlm_failover_call **out,
                                     dlm_lease_action *out_action,
                                     gdlm_err *err);
dlm_status gdlm_failover_poll_connect(dlm_failover *f, dlm_failover_call *c,
                                      uint64_t now_ms, char *addr,
                                      size_t addr_len, dlm_failover_step *out,
                                      gdlm_err *err);
dlm_status gdlm_failover_discovered(dlm_failover *f, dlm_failover_call *c,
                                    uint64_t epoch, const char *line,
                                    size_t line_len, uint64_t now_ms,
                                    bool *out_stay, gdlm_err *err);
dlm_status gdlm_failover_handle(dlm_failover *f, dlm_failover_call *c,
                                uint64_t epoch, uint32_t outcome,
                                const char *line, size_t line_len,
                                uint64_t now_ms, bool *out_retry,
                                gdlm_err *err);

#endif /* DLM_GO_SHIM_H */
