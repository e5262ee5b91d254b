/*
 * dlm-chaos-shim: an LD_PRELOAD library the chaos suite (dlm-chaos) puts
 * under each dlm-server member. Two jobs, both off unless their variable
 * is set:
 *
 * DLM_CHAOS_SYNC_LOG=FILE  Before every fsync/fdatasync of a regular file,
 *   appends "PATH\tLENGTH\n" to FILE, LENGTH being the end of the furthest
 *   byte written to that file through any fd of this process. Bytes past
 *   the last LENGTH recorded for a file were never synced: a crash of the
 *   machine could lose them, and the suite cuts them off after a SIGKILL.
 *   An fd that wrote nothing records the file's size (an fsync syncs the
 *   whole file). Writes and syncs of a file are assumed to go through one
 *   fd while it has one writer, as raft-engine's do.
 *   (Recorded before the sync runs: if the process dies inside the sync,
 *   the suite treats those bytes as synced and keeps them, which errs on
 *   the side of never cutting what the server was told is durable.)
 *
 * DLM_CHAOS_CLOCK=FILE  FILE holds three signed little-endian 64-bit
 *   numbers the suite rewrites in place while the member runs:
 *   [0]  seconds added to CLOCK_REALTIME (clock_gettime, gettimeofday,
 *        time): the member's wall clock jumps;
 *   [1]  nanoseconds added to CLOCK_MONOTONIC, CLOCK_MONOTONIC_COARSE,
 *        CLOCK_MONOTONIC_RAW and CLOCK_BOOTTIME (what std::time::Instant
 *        reads): the member's monotonic clock jumps forward;
 *   [2]  if not 0, the monotonic clocks (offset included) read at most
 *        this many nanoseconds: the member's monotonic clock stalls. The
 *        suite ends a stall by lowering [1] by the stall's length and then
 *        clearing [2], so the clock goes on from where it stopped.
 *   Each monotonic clock also never reads less than it last read in this
 *   process, whatever the order in which the suite's writes land.
 *   Timers the kernel runs (epoll_wait, nanosleep) are untouched: to the
 *   member, a jump forward looks like time that passed without it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_FD 65536
static _Atomic int64_t written_end[MAX_FD];
static int sync_log = -1;
static volatile int64_t *clock_offset; /* the three numbers above */
#define CLOCK_WORDS 3

__attribute__((constructor)) static void shim_init(void) {
    const char *log = getenv("DLM_CHAOS_SYNC_LOG");
    if (log && *log) {
        sync_log = (int)syscall(SYS_openat, AT_FDCWD, log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    }
    const char *clk = getenv("DLM_CHAOS_CLOCK");
    if (clk && *clk) {
        int fd = (int)syscall(SYS_openat, AT_FDCWD, clk, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            void *p = mmap(NULL, CLOCK_WORDS * 8, PROT_READ, MAP_SHARED, fd, 0);
            if (p != MAP_FAILED) clock_offset = (volatile int64_t *)p;
            syscall(SYS_close, fd);
        }
    }
}

static void note_write(int fd, int64_t end) {
    if (sync_log < 0 || fd < 0 || fd >= MAX_FD || end <= 0) return;
    int64_t cur = written_end[fd];
    while (end > cur && !__atomic_compare_exchange_n(&written_end[fd], &cur, end, 0,
                                                     __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
}

static void record_sync(int fd) {
    if (sync_log < 0 || fd < 0 || fd >= MAX_FD) return;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = 0;
    /* An fd that wrote nothing (a file reopened by a restarted member and
     * synced before any write): an fsync syncs the whole file, whoever
     * wrote it, so all of it counts as synced. */
    long long synced = written_end[fd] > 0 ? (long long)written_end[fd] : (long long)st.st_size;
    char line[PATH_MAX + 32];
    int len = snprintf(line, sizeof line, "%s\t%lld\n", path, synced);
    if (len > 0) syscall(SYS_write, sync_log, line, (size_t)len);
}

#define REAL(name)                                \
    static __typeof__(&name) real_##name;         \
    if (!real_##name) real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite);
    ssize_t r = real_pwrite(fd, buf, count, offset);
    if (r > 0) note_write(fd, (int64_t)offset + r);
    return r;
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite64);
    ssize_t r = real_pwrite64(fd, buf, count, offset);
    if (r > 0) note_write(fd, (int64_t)offset + r);
    return r;
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t offset) {
    REAL(pwritev);
    ssize_t r = real_pwritev(fd, iov, cnt, offset);
    if (r > 0) note_write(fd, (int64_t)offset + r);
    return r;
}

ssize_t write(int fd, const void *buf, size_t count) {
    REAL(write);
    ssize_t r = real_write(fd, buf, count);
    if (r > 0 && sync_log >= 0 && fd >= 0 && fd < MAX_FD) {
        off_t pos = lseek(fd, 0, SEEK_CUR);
        if (pos >= 0) note_write(fd, (int64_t)pos);
    }
    return r;
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    REAL(writev);
    ssize_t r = real_writev(fd, iov, cnt);
    if (r > 0 && sync_log >= 0 && fd >= 0 && fd < MAX_FD) {
        off_t pos = lseek(fd, 0, SEEK_CUR);
        if (pos >= 0) note_write(fd, (int64_t)pos);
    }
    return r;
}

int close(int fd) {
    REAL(close);
    if (fd >= 0 && fd < MAX_FD) written_end[fd] = 0;
    return real_close(fd);
}

int fsync(int fd) {
    REAL(fsync);
    record_sync(fd);
    return real_fsync(fd);
}

int fdatasync(int fd) {
    REAL(fdatasync);
    record_sync(fd);
    return real_fdatasync(fd);
}

static int64_t offset_now(void) { return clock_offset ? clock_offset[0] : 0; }

/* The last value each monotonic clock returned (ns), to keep it monotonic. */
static _Atomic int64_t mono_last[4];

static int mono_slot(clockid_t id) {
    switch (id) {
    case CLOCK_MONOTONIC: return 0;
    case CLOCK_MONOTONIC_COARSE: return 1;
    case CLOCK_MONOTONIC_RAW: return 2;
    case CLOCK_BOOTTIME: return 3;
    default: return -1;
    }
}

static void shift_monotonic(int slot, struct timespec *ts) {
    if (!clock_offset) return;
    int64_t v = (int64_t)ts->tv_sec * 1000000000LL + ts->tv_nsec + clock_offset[1];
    int64_t frozen = clock_offset[2];
    if (frozen != 0 && v > frozen) v = frozen;
    int64_t last = mono_last[slot];
    while (1) {
        if (v < last) {
            v = last;
            break;
        }
        if (__atomic_compare_exchange_n(&mono_last[slot], &last, v, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST))
            break;
    }
    ts->tv_sec = (time_t)(v / 1000000000LL);
    ts->tv_nsec = (long)(v % 1000000000LL);
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    REAL(clock_gettime);
    int r = real_clock_gettime(id, ts);
    if (r != 0) return r;
    if (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE) {
        ts->tv_sec += offset_now();
    } else {
        int slot = mono_slot(id);
        if (slot >= 0) shift_monotonic(slot, ts);
    }
    return r;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    REAL(gettimeofday);
    int r = real_gettimeofday(tv, tz);
    if (r == 0) tv->tv_sec += offset_now();
    return r;
}

time_t time(time_t *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t) *t = ts.tv_sec;
    return ts.tv_sec;
}
