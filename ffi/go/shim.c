// The Go package's C side; see shim.h.

#include "shim.h"

typedef dlm_status (*last_error_fn)(const void *h, char *buf, size_t len,
                                    size_t *out_n);

static dlm_status wire_last_error(const void *h, char *buf, size_t len,
                                  size_t *out_n) {
    return dlm_wire_last_error((const dlm_wire *)h, buf, len, out_n);
}

static dlm_status lease_last_error(const void *h, char *buf, size_t len,
                                   size_t *out_n) {
    return dlm_lease_last_error((const dlm_lease *)h, buf, len, out_n);
}

static dlm_status failover_last_error(const void *h, char *buf, size_t len,
                                      size_t *out_n) {
    return dlm_failover_last_error((const dlm_failover *)h, buf, len, out_n);
}

// Fills `err` after a call on handle `h` returned `s`; returns `s`.
static dlm_status fail(dlm_status s, const void *h, last_error_fn get,
                       gdlm_err *err) {
    if (s == DLM_OK || s == DLM_ERR_BUFFER_TOO_SMALL || err == NULL) {
        return s;
    }
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

// One more than the longest list libdlm takes, so that it sees (and
// refuses, saying why) a list that is too long.
#define LIST_MAX 33

// Points ptrs at the texts of buf (lens[i] bytes each, one after the
// other); how many (at most LIST_MAX).
static size_t point(const char **ptrs, const char *buf, const size_t *lens,
                    size_t count) {
    size_t n = count < LIST_MAX ? count : LIST_MAX;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        ptrs[i] = buf == NULL ? "" : buf + off;
        off += lens[i];
    }
    return n;
}

// Declares the dlm_request `req` of the GDLM_REQUEST_ARGS, its lists on
// this stack frame.
#define REQUEST(req)                                                          \
    const char *req##_names[LIST_MAX];                                        \
    const char *req##_readers[LIST_MAX];                                      \
    dlm_request req = {                                                       \
        .call = call, .flags = flags, .name = name, .name_len = name_len,     \
        .value = value, .value_len = value_len, .ttl_ms = ttl_ms,             \
        .wait_ms = wait_ms, .token = token, .revision = revision,             \
        .permits = permits, .lock_delay_ms = lock_delay_ms,                   \
        .names = req##_names, .name_lens = name_lens,                         \
        .names_count = point(req##_names, names, name_lens, names_count),     \
        .readers = req##_readers, .reader_lens = reader_lens,                 \
        .readers_count =                                                      \
            point(req##_readers, readers, reader_lens, readers_count),        \
    }

dlm_status gdlm_wire_write(const dlm_wire *w, GDLM_REQUEST_ARGS, char *buf,
                           size_t len, size_t *out_n, gdlm_err *err) {
    REQUEST(req);
    return fail(dlm_wire_write(w, &req, buf, len, out_n), w, wire_last_error,
                err);
}

dlm_status gdlm_wire_read(const dlm_wire *w, GDLM_REQUEST_ARGS,
                          const char *line, size_t line_len, void *data,
                          size_t data_cap, dlm_answer *out, gdlm_err *err) {
    REQUEST(req);
    return fail(dlm_wire_read(w, &req, line, line_len, data, data_cap, out), w,
                wire_last_error, err);
}

// The offset of p into data (0 for NULL).
static size_t offset_of(const void *p, const void *data) {
    return p == NULL ? 0 : (size_t)((const char *)p - (const char *)data);
}

dlm_status gdlm_wire_event(const dlm_wire *w, uint32_t flags, const char *line,
                           size_t line_len, void *data, size_t data_cap,
                           gdlm_event *out, size_t *out_needed, gdlm_err *err) {
    dlm_event e = {0};
    dlm_status s = fail(dlm_wire_event(w, flags, line, line_len, data,
                                       data_cap, &e, out_needed),
                        w, wire_last_error, err);
    if (s == DLM_OK) {
        out->revision = e.revision;
        out->token = e.token;
        out->data_revision = e.data_revision;
        out->what = (uint32_t)e.what;
        out->kind = (uint32_t)e.kind;
        out->has = e.has;
        out->permits = e.permits;
        out->name_off = offset_of(e.name, data);
        out->name_len = e.name_len;
        out->owner_off = offset_of(e.owner, data);
        out->owner_len = e.owner_len;
        out->value_off = offset_of(e.value, data);
        out->value_len = e.value_len;
    }
    return s;
}

dlm_status gdlm_wire_id(const dlm_wire *w, char *buf, size_t len,
                        size_t *out_n) {
    return dlm_wire_id(w, buf, len, out_n);
}

dlm_status gdlm_lease_new(const dlm_wire *w, GDLM_REQUEST_ARGS,
                          uint64_t sent_ms, uint64_t now_ms, const char *line,
                          size_t line_len, dlm_lease **out, gdlm_err *err) {
    REQUEST(req);
    return fail(dlm_lease_new(w, &req, sent_ms, now_ms, line, line_len, out),
                w, wire_last_error, err);
}

dlm_status gdlm_lease_new_all(const dlm_wire *w, GDLM_REQUEST_ARGS,
                              uint64_t sent_ms, uint64_t now_ms,
                              const char *line, size_t line_len,
                              dlm_lease **out, size_t cap, gdlm_err *err) {
    REQUEST(req);
    return fail(dlm_lease_new_all(w, &req, sent_ms, now_ms, line, line_len,
                                  out, cap),
                w, wire_last_error, err);
}

dlm_status gdlm_wire_owner(const dlm_wire *w, GDLM_REQUEST_ARGS,
                           const char *line, size_t line_len, char *buf,
                           size_t len, size_t *out_n, gdlm_err *err) {
    REQUEST(req);
    return fail(dlm_wire_owner(w, &req, line, line_len, buf, len, out_n), w,
                wire_last_error, err);
}

dlm_status gdlm_lease_extend(dlm_lease *l, uint64_t now_ms, uint64_t ttl_ms,
                             gdlm_err *err) {
    return fail(dlm_lease_extend(l, now_ms, ttl_ms), l, lease_last_error, err);
}

dlm_status gdlm_lease_poll_request(dlm_lease *l, const dlm_wire *w,
                                   uint64_t now_ms, char *buf, size_t len,
                                   size_t *out_n, dlm_lease_action *out_action,
                                   gdlm_err *err) {
    return fail(dlm_lease_poll_request(l, w, now_ms, buf, len, out_n,
                                       out_action),
                l, lease_last_error, err);
}

dlm_status gdlm_lease_handle_response(dlm_lease *l, uint64_t now_ms,
                                      const char *line, size_t line_len,
                                      dlm_lease_done *out_done,
                                      dlm_lease_info *out_info, gdlm_err *err) {
    dlm_status s = fail(
        dlm_lease_handle_response(l, now_ms, line, line_len, out_done), l,
        lease_last_error, err);
    // The state after the answer, whatever it was (the lease may be lost).
    (void)dlm_lease_inspect(l, now_ms, out_info);
    return s;
}

dlm_status gdlm_lease_state(dlm_lease *l, uint64_t now_ms,
                            dlm_lease_info *out) {
    dlm_status s = dlm_lease_handle_timeout(l, now_ms);
    if (s != DLM_OK) {
        return s;
    }
    return dlm_lease_inspect(l, now_ms, out);
}

dlm_status gdlm_lease_failed(dlm_lease *l, uint64_t now_ms,
                             dlm_lease_info *out) {
    dlm_status s = dlm_lease_handle_failure(l, now_ms);
    if (s != DLM_OK) {
        return s;
    }
    return dlm_lease_inspect(l, now_ms, out);
}

dlm_status gdlm_failover_new(const char *servers, size_t servers_len,
                             uint32_t no_discovery, const uint8_t *seed,
                             dlm_failover **out, gdlm_err *err) {
    dlm_failover_config cfg = {0};
    cfg.no_discovery = no_discovery;
    return fail(dlm_failover_new(servers, servers_len, &cfg, seed, out), NULL,
                failover_last_error, err);
}

dlm_status gdlm_failover_start(dlm_failover *f, const dlm_wire *w,
                               GDLM_REQUEST_ARGS, uint64_t now_ms,
                               uint64_t timeout_ms, dlm_failover_call **out,
                               gdlm_err *err) {
    REQUEST(req);
    return fail(dlm_failover_start(f, w, &req, now_ms, timeout_ms, out), f,
                failover_last_error, err);
}

dlm_status gdlm_failover_start_lease(dlm_failover *f, dlm_lease *l,
                                     const dlm_wire *w, uint64_t now_ms,
                                     uint64_t timeout_ms,
                                     dlm_failover_call **out,
                                     dlm_lease_action *out_action,
                                     gdlm_err *err) {
    return fail(dlm_failover_start_lease(f, l, w, now_ms, timeout_ms, out,
                                         out_action),
                f, failover_last_error, err);
}

dlm_status gdlm_failover_poll_connect(dlm_failover *f, dlm_failover_call *c,
                                      uint64_t now_ms, char *addr,
                                      size_t addr_len, dlm_failover_step *out,
                                      gdlm_err *err) {
    return fail(dlm_failover_poll_connect(f, c, now_ms, addr, addr_len, out),
                f, failover_last_error, err);
}

dlm_status gdlm_failover_discovered(dlm_failover *f, dlm_failover_call *c,
                                    uint64_t epoch, const char *line,
                                    size_t line_len, uint64_t now_ms,
                                    bool *out_stay, gdlm_err *err) {
    return fail(dlm_failover_discovered(f, c, epoch, line, line_len, now_ms,
                                        out_stay),
                f, failover_last_error, err);
}

dlm_status gdlm_failover_handle(dlm_failover *f, dlm_failover_call *c,
                                uint64_t epoch, uint32_t outcome,
                                const char *line, size_t line_len,
                                uint64_t now_ms, bool *out_retry,
                                gdlm_err *err) {
    return fail(dlm_failover_handle(f, c, epoch, outcome, line, line_len,
                                    now_ms, out_retry),
                f, failover_last_error, err);
}
