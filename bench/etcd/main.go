// Command etcd-bench is dlm-bench's load generator for etcd: closed-loop
// clients over persistent connections through etcd's own v3 client, locks
// through its concurrency session and mutex (one session per client), kv
// through Put and Get. `dlm-bench cluster` starts it and reads the JSON
// lines it prints on stdout; errors go to stderr.
//
//	etcd-bench wait     -endpoints A,B,C [-timeout 30s]
//	etcd-bench load     -endpoints A,B,C -workload lock|kv -clients N [-warmup 300ms] [-duration 2s]
//	etcd-bench failover -endpoints A,B,C   (then commands on stdin, see cmdFailover)
//
// Times that dlm-bench compares with its own are CLOCK_MONOTONIC
// nanoseconds, the clock Rust's Instant reads on Linux.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// keyPrefix is where every key this program writes lives.
const keyPrefix = "/dlm-bench/"

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "wait":
		err = cmdWait(os.Args[2:])
	case "load":
		err = cmdLoad(os.Args[2:])
	case "failover":
		err = cmdFailover(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd-bench: %v\n", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: etcd-bench wait|load|failover -endpoints A,B,C [flags]")
	os.Exit(2)
}

// monoNs is CLOCK_MONOTONIC in nanoseconds.
func monoNs() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

// cpuTime is this process's user + system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var outMu sync.Mutex

// emit prints one JSON line on stdout.
func emit(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	outMu.Lock()
	defer outMu.Unlock()
	os.Stdout.Write(append(b, '\n'))
}

func splitEndpoints(s string) ([]string, error) {
	var eps []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	if len(eps) == 0 {
		return nil, errors.New("-endpoints is required")
	}
	return eps, nil
}

func newClient(endpoints []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
}

// findLeader asks every endpoint for its status and returns the index of
// the endpoint that a majority of the answering members name as leader,
// or -1. It also returns that leader's raft index.
func findLeader(ctx context.Context, cli *clientv3.Client, eps []string) (int, uint64) {
	votes := map[uint64]int{}
	byMember := map[uint64]int{}
	indexOf := map[uint64]uint64{}
	for i, ep := range eps {
		c, cancel := context.WithTimeout(ctx, time.Second)
		st, err := cli.Status(c, ep)
		cancel()
		if err != nil || st.Header == nil {
			continue
		}
		byMember[st.Header.MemberId] = i
		indexOf[st.Header.MemberId] = st.RaftIndex
		if st.Leader != 0 {
			votes[st.Leader]++
		}
	}
	for id, n := range votes {
		if i, ok := byMember[id]; ok && n > len(eps)/2 {
			return i, indexOf[id]
		}
	}
	return -1, 0
}

// waitReady waits until a majority agrees on a leader and a Put succeeds.
func waitReady(cli *clientv3.Client, eps []string, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if i, _ := findLeader(context.Background(), cli, eps); i >= 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := cli.Put(ctx, keyPrefix+"ready", "1")
			cancel()
			if err == nil {
				return i, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return -1, fmt.Errorf("no leader and no successful put within %v", timeout)
}

func cmdWait(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ExitOnError)
	endpoints := fs.String("endpoints", "", "comma-separated client URLs")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	fs.Parse(args)
	eps, err := splitEndpoints(*endpoints)
	if err != nil {
		return err
	}
	cli, err := newClient(eps)
	if err != nil {
		return err
	}
	defer cli.Close()
	t0 := time.Now()
	leader, err := waitReady(cli, eps, *timeout)
	if err != nil {
		return err
	}
	emit(map[string]any{"event": "ready", "leader": leader, "ms": msSince(t0)})
	return nil
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

// tally is what one client counted inside the measured window.
type tally struct {
	ops, cycles, errors uint64
	latUs               []uint32
	firstErr            error
}

func (t *tally) op(err error, sent time.Time, inWindow func(time.Time) bool) {
	now := time.Now()
	if err != nil && t.firstErr == nil {
		t.firstErr = err
	}
	if !inWindow(now) {
		return
	}
	t.ops++
	if err != nil {
		t.errors++
	}
	us := now.Sub(sent).Microseconds()
	if us > int64(^uint32(0)) {
		us = int64(^uint32(0))
	}
	t.latUs = append(t.latUs, uint32(us))
}

// percentile is the nearest-rank percentile dlm-bench uses for its own rows.
func percentile(sorted []uint32, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1)*p + 0.5)
	return float64(sorted[i])
}

// worker is one closed-loop client: its own connection, and for locks its
// own session (lease) and mutex on its own key.
type worker struct {
	cli   *clientv3.Client
	sess  *concurrency.Session
	mutex *concurrency.Mutex
	key   string
}

func cmdLoad(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	endpoints := fs.String("endpoints", "", "comma-separated client URLs")
	workload := fs.String("workload", "lock", "lock (mutex Lock+Unlock) or kv (Put+Get)")
	clients := fs.Int("clients", 16, "closed-loop clients")
	warmup := fs.Duration("warmup", 300*time.Millisecond, "unmeasured time first")
	duration := fs.Duration("duration", 2*time.Second, "measured time")
	placement := fs.String("placement", "spread", "spread: client i uses endpoint i mod n; first: all use the first")
	opTimeout := fs.Duration("op-timeout", 10*time.Second, "longest wait for one request")
	fs.Parse(args)
	eps, err := splitEndpoints(*endpoints)
	if err != nil {
		return err
	}
	if *workload != "lock" && *workload != "kv" {
		return fmt.Errorf("unknown workload %q", *workload)
	}
	if *placement != "spread" && *placement != "first" {
		return fmt.Errorf("unknown placement %q", *placement)
	}
	if *clients < 1 {
		return errors.New("-clients must be at least 1")
	}

	// Connect every client (and open its session) before the clock starts.
	workers := make([]*worker, *clients)
	setupErr := make(chan error, *clients)
	var wg sync.WaitGroup
	for i := range workers {
		ep := eps[0]
		if *placement == "spread" {
			ep = eps[i%len(eps)]
		}
		wg.Add(1)
		go func(i int, ep string) {
			defer wg.Done()
			cli, err := newClient([]string{ep})
			if err != nil {
				setupErr <- err
				return
			}
			w := &worker{cli: cli, key: fmt.Sprintf("%slock-%07d", keyPrefix, i)}
			workers[i] = w
			if *workload == "lock" {
				s, err := concurrency.NewSession(cli, concurrency.WithTTL(30))
				if err != nil {
					setupErr <- err
					return
				}
				w.sess = s
				w.mutex = concurrency.NewMutex(s, w.key)
			}
		}(i, ep)
	}
	wg.Wait()
	defer func() {
		for _, w := range workers {
			if w == nil {
				continue
			}
			if w.sess != nil {
				w.sess.Close()
			}
			w.cli.Close()
		}
	}()
	select {
	case err := <-setupErr:
		return fmt.Errorf("setting up clients: %w", err)
	default:
	}

	start := time.Now().Add(100 * time.Millisecond)
	winStart := start.Add(*warmup)
	winEnd := winStart.Add(*duration)
	inWindow := func(t time.Time) bool { return !t.Before(winStart) && t.Before(winEnd) }
	var stop atomic.Bool
	value := strings.Repeat("v", 100)
	tallies := make([]tally, len(workers))
	for i, w := range workers {
		wg.Add(1)
		go func(w *worker, t *tally) {
			defer wg.Done()
			time.Sleep(time.Until(start))
			consecutive := 0
			for !stop.Load() && consecutive < 1000 {
				ok := runCycle(w, *workload, value, *opTimeout, t, inWindow)
				if ok {
					consecutive = 0
				} else {
					consecutive++
					time.Sleep(time.Millisecond)
				}
			}
		}(w, &tallies[i])
	}

	// The window's edges, for dlm-bench to sample the servers' CPU time.
	time.Sleep(time.Until(winStart))
	cpu0 := cpuTime()
	emit(map[string]any{"event": "start"})
	time.Sleep(time.Until(winEnd))
	cpu1 := cpuTime()
	emit(map[string]any{"event": "end"})
	stop.Store(true)
	wg.Wait()

	var all []uint32
	res := map[string]any{"event": "result", "workload": *workload, "clients": *clients}
	var ops, cycles, errs uint64
	var firstErr error
	for i := range tallies {
		t := &tallies[i]
		ops += t.ops
		cycles += t.cycles
		errs += t.errors
		all = append(all, t.latUs...)
		if firstErr == nil {
			firstErr = t.firstErr
		}
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	res["ops"] = ops
	res["cycles"] = cycles
	res["errors"] = errs
	res["seconds"] = duration.Seconds()
	res["p50_us"] = percentile(all, 0.50)
	res["p99_us"] = percentile(all, 0.99)
	res["max_us"] = 0.0
	if len(all) > 0 {
		res["max_us"] = float64(all[len(all)-1])
	}
	res["cpu_us"] = float64((cpu1 - cpu0).Microseconds())
	if firstErr != nil {
		res["first_error"] = firstErr.Error()
		fmt.Fprintf(os.Stderr, "etcd-bench: %d errors, first: %v\n", errs, firstErr)
	}
	emit(res)
	return nil
}

// runCycle does one lock+unlock or put+get and reports whether both
// requests succeeded.
func runCycle(w *worker, workload, value string, opTimeout time.Duration, t *tally, inWindow func(time.Time) bool) bool {
	first := func(ctx context.Context) error {
		if workload == "lock" {
			return w.mutex.Lock(ctx)
		}
		_, err := w.cli.Put(ctx, w.key, value)
		return err
	}
	second := func(ctx context.Context) error {
		if workload == "lock" {
			return w.mutex.Unlock(ctx)
		}
		r, err := w.cli.Get(ctx, w.key)
		if err == nil && len(r.Kvs) != 1 {
			err = fmt.Errorf("get %s: %d values", w.key, len(r.Kvs))
		}
		return err
	}
	for n, op := range []func(context.Context) error{first, second} {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		sent := time.Now()
		err := op(ctx)
		cancel()
		t.op(err, sent, inWindow)
		if err != nil {
			return false
		}
		if n == 1 && inWindow(time.Now()) {
			t.cycles++
		}
	}
	return true
}

// attempt is one Put of the failover loop: when it was sent and answered
// (CLOCK_MONOTONIC ns), and its error ("" when it succeeded).
type attempt struct {
	sent, done int64
	err        string
}

// putLoop Puts one key over and over, keeping what happened.
type putLoop struct {
	mu       sync.Mutex
	attempts []attempt
	notify   chan struct{}
	stop     atomic.Bool
	done     chan struct{}
}

func (p *putLoop) run(cli *clientv3.Client, opTimeout time.Duration) {
	defer close(p.done)
	value := strings.Repeat("v", 100)
	for !p.stop.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		sent := monoNs()
		_, err := cli.Put(ctx, keyPrefix+"failover", value)
		a := attempt{sent: sent, done: monoNs()}
		cancel()
		if err != nil {
			a.err = err.Error()
		}
		p.mu.Lock()
		if len(p.attempts) >= 1<<16 {
			p.attempts = append(p.attempts[:0], p.attempts[len(p.attempts)/2:]...)
		}
		p.attempts = append(p.attempts, a)
		p.mu.Unlock()
		select {
		case p.notify <- struct{}{}:
		default:
		}
		if err != nil {
			time.Sleep(time.Millisecond)
		}
	}
}

// recovery is what followed a kill: the first Put sent at or after it that
// succeeded, and the Puts that failed between the kill and that success.
type recovery struct {
	ok        bool
	success   attempt
	failed    int
	lastError string
}

// firstAfter waits for the first Put sent at or after killNs to succeed
// (requests in flight at the kill do not count), then forgets everything
// before it.
func (p *putLoop) firstAfter(killNs int64, timeout time.Duration) recovery {
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		for i, a := range p.attempts {
			if a.sent < killNs || a.err != "" {
				continue
			}
			r := recovery{ok: true, success: a}
			for _, f := range p.attempts[:i] {
				if f.err != "" && f.done >= killNs {
					r.failed++
					r.lastError = f.err
				}
			}
			p.attempts = append(p.attempts[:0], p.attempts[i+1:]...)
			p.mu.Unlock()
			return r
		}
		p.mu.Unlock()
		select {
		case <-p.notify:
		case <-deadline:
			return recovery{}
		}
	}
}

// cmdFailover keeps one client Putting while dlm-bench kills members, and
// answers commands read from stdin, one per line, with one JSON line each:
//
//	leader      {"event":"leader","index":I}  the leader's endpoint, -1 if none within -timeout
//	killed NS   {"event":"recovered","ok":B,"ms":M,"failed":N,"last_error":E}  time from NS
//	            (CLOCK_MONOTONIC) to the answer of the first Put sent at or after NS that
//	            succeeded, and the Puts that failed in between
//	rejoined I  {"event":"rejoined","ok":B,"ms":M}  endpoint I answers, knows the leader and
//	            has caught up with the leader's raft index as it was when asked
//	quit        stop (so does end of input)
func cmdFailover(args []string) error {
	fs := flag.NewFlagSet("failover", flag.ExitOnError)
	endpoints := fs.String("endpoints", "", "comma-separated client URLs")
	timeout := fs.Duration("timeout", 30*time.Second, "longest wait for a leader, a recovery or a rejoin")
	opTimeout := fs.Duration("op-timeout", 500*time.Millisecond, "longest wait for one Put before the next is sent")
	fs.Parse(args)
	eps, err := splitEndpoints(*endpoints)
	if err != nil {
		return err
	}
	cli, err := newClient(eps)
	if err != nil {
		return err
	}
	defer cli.Close()
	if _, err := waitReady(cli, eps, *timeout); err != nil {
		return err
	}
	loop := &putLoop{notify: make(chan struct{}, 1), done: make(chan struct{})}
	go loop.run(cli, *opTimeout)
	defer func() {
		loop.stop.Store(true)
		<-loop.done
	}()
	emit(map[string]any{"event": "ready"})

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "leader":
			idx := -1
			deadline := time.Now().Add(*timeout)
			for idx < 0 && time.Now().Before(deadline) {
				if idx, _ = findLeader(context.Background(), cli, eps); idx < 0 {
					time.Sleep(20 * time.Millisecond)
				}
			}
			emit(map[string]any{"event": "leader", "index": idx})
		case f[0] == "killed" && len(f) == 2:
			killNs, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return fmt.Errorf("bad command %q", in.Text())
			}
			r := loop.firstAfter(killNs, *timeout)
			emit(map[string]any{
				"event": "recovered", "ok": r.ok, "ms": float64(r.success.done-killNs) / 1e6,
				"failed": r.failed, "last_error": r.lastError,
			})
		case f[0] == "rejoined" && len(f) == 2:
			i, err := strconv.Atoi(f[1])
			if err != nil || i < 0 || i >= len(eps) {
				return fmt.Errorf("bad command %q", in.Text())
			}
			t0 := time.Now()
			ok := waitRejoined(cli, eps, i, *timeout)
			emit(map[string]any{"event": "rejoined", "ok": ok, "ms": msSince(t0)})
		case f[0] == "quit":
			return nil
		default:
			return fmt.Errorf("unknown command %q", in.Text())
		}
	}
	return in.Err()
}

// waitRejoined waits until endpoint i answers, knows a leader and has
// applied up to the leader's raft index as it was at the first look.
func waitRejoined(cli *clientv3.Client, eps []string, i int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	var target uint64
	for time.Now().Before(deadline) {
		if target == 0 {
			if l, idx := findLeader(context.Background(), cli, eps); l >= 0 {
				target = idx
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := cli.Status(ctx, eps[i])
		cancel()
		if target != 0 && err == nil && st.Leader != 0 && st.RaftIndex >= target {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}
