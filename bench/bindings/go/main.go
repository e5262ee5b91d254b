// Command bench-bindings-go is the Go program of the bindings benchmark:
// the dlm Go package (ffi/go) against go-redis, the same closed-loop
// workloads over loopback, alternating dlm and Redis. The contract
// (environment in, JSON lines out) is bench/bindings/README.md.
//
// Workers are goroutines. Both clients are meant to be shared by many
// goroutines, and are used that way, each with its defaults: one
// *dlm.Client (a few pipelined connections) and one *redis.Client (a pool
// of 10 connections per GOMAXPROCS) for all the workers of a measurement.
//
//   - lock: uncontended lock+unlock, each worker on its own name.
//     dlm: c.Lock(ctx, name, dlm.TTL(30 s)), l.Unlock(ctx).
//     Redis: SET key token NX PX 30000, then a redis.Script of the Lua
//     compare-and-delete (EVALSHA).
//   - kv: put+get of a 32-byte value, each worker on its own key.
//     dlm: c.Put (TTL 300 s), c.Get. Redis: SET key value PX 300000, GET.
//
// One operation is one cycle; the latencies are a cycle's.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"dlm.example/dlm"
	"github.com/redis/go-redis/v9"
)

var value = []byte("0123456789abcdef0123456789abcdef")

var unlock = redis.NewScript(`if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`)

type setup struct {
	dlm, redis, run string
	seconds         time.Duration
}

// client is one measurement's shared client and its cycle.
type client interface {
	name() string
	cycle(ctx context.Context, worker int, key string, i uint64) error
	close()
}

// dlmClient is one shared *dlm.Client, or (perWorker) one per worker.
type dlmClient struct {
	cs        []*dlm.Client
	workload  string
	perWorker bool
}

func (d *dlmClient) name() string {
	if d.perWorker {
		return "dlm-go-per-worker"
	}
	return "dlm-go"
}

func (d *dlmClient) cycle(ctx context.Context, worker int, key string, _ uint64) error {
	c := d.cs[0]
	if d.perWorker {
		c = d.cs[worker]
	}
	if d.workload == "lock" {
		l, err := c.Lock(ctx, key, dlm.TTL(30*time.Second))
		if err != nil {
			return err
		}
		return l.Unlock(ctx)
	}
	if _, err := c.Put(ctx, key, value, 300*time.Second); err != nil {
		return err
	}
	v, err := c.Get(ctx, key)
	if err != nil {
		return err
	}
	if !bytes.Equal(v.Data, value) {
		return fmt.Errorf("get %s: %q, want %q", key, v.Data, value)
	}
	return nil
}

func (d *dlmClient) close() {
	for _, c := range d.cs {
		c.Close()
	}
}

type redisClient struct {
	c        *redis.Client
	workload string
	run      string
}

func (r *redisClient) name() string { return "go-redis" }

func (r *redisClient) cycle(ctx context.Context, _ int, key string, i uint64) error {
	if r.workload == "lock" {
		token := r.run + "-" + key + "-" + strconv.FormatUint(i, 10)
		ok, err := r.c.SetNX(ctx, key, token, 30*time.Second).Result()
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("SET NX %s: taken", key)
		}
		n, err := unlock.Run(ctx, r.c, []string{key}, token).Int()
		if err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("unlock %s: the lock was not ours", key)
		}
		return nil
	}
	if err := r.c.Set(ctx, key, value, 300*time.Second).Err(); err != nil {
		return err
	}
	got, err := r.c.Get(ctx, key).Bytes()
	if err != nil {
		return err
	}
	if !bytes.Equal(got, value) {
		return fmt.Errorf("GET %s: %q, want %q", key, got, value)
	}
	return nil
}

func (r *redisClient) close() { r.c.Close() }

func open(ctx context.Context, kind, workload string, workers int, s *setup) (client, error) {
	switch kind {
	case "dlm", "dlm-per-worker":
		d := &dlmClient{workload: workload, perWorker: kind == "dlm-per-worker"}
		n := 1
		if d.perWorker {
			n = workers
		}
		for range n {
			c, err := dlm.Dial(ctx, s.dlm)
			if err != nil {
				d.close()
				return nil, err
			}
			d.cs = append(d.cs, c)
		}
		return d, nil
	case "redis":
	default:
		return nil, fmt.Errorf("unknown client %q", kind)
	}
	c := redis.NewClient(&redis.Options{Addr: s.redis})
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, err
	}
	return &redisClient{c: c, workload: workload, run: s.run}, nil
}

// measure runs workers goroutines on one shared client for s.seconds and
// prints the result line.
func measure(kind, workload string, workers int, s *setup) error {
	ctx := context.Background()
	c, err := open(ctx, kind, workload, workers, s)
	if err != nil {
		return fmt.Errorf("%s: connect: %w", kind, err)
	}
	defer c.close()
	var (
		stop    atomic.Bool
		ready   sync.WaitGroup
		done    sync.WaitGroup
		start   = make(chan struct{})
		samples = make([][]uint32, workers)
		errs    = make([]error, workers)
	)
	for w := 0; w < workers; w++ {
		ready.Add(1)
		done.Add(1)
		go func(w int) {
			defer done.Done()
			// Its own key per measurement: a dlm entry belongs to the
			// client (owner ID) that wrote it.
			key := fmt.Sprintf("bench:%s:go:%s:%s:%d:%d", s.run, workload, kind, workers, w)
			err := c.cycle(ctx, w, key, 0) // warm-up
			ready.Done()
			if err != nil {
				errs[w] = err
				return
			}
			<-start
			own := make([]uint32, 0, 1<<16)
			for i := uint64(1); !stop.Load(); i++ {
				t0 := time.Now()
				if err := c.cycle(ctx, w, key, i); err != nil {
					errs[w] = err
					break
				}
				own = append(own, uint32(min(time.Since(t0).Microseconds(), 1<<32-1)))
			}
			samples[w] = own
		}(w)
	}
	ready.Wait()
	t0 := time.Now()
	close(start)
	time.Sleep(s.seconds)
	stop.Store(true)
	done.Wait()
	elapsed := time.Since(t0).Seconds()
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("%s %s: %w", kind, workload, err)
		}
	}
	var all []uint32
	for _, own := range samples {
		all = append(all, own...)
	}
	slices.Sort(all)
	var p50, p99 uint32
	if n := len(all); n > 0 {
		p50, p99 = all[n/2], all[n*99/100]
	}
	line, err := json.Marshal(map[string]any{
		"binding": "go", "client": c.name(), "workload": workload, "workers": workers,
		"ops_per_s": float64(len(all)) / elapsed, "p50_us": p50, "p99_us": p99,
		"ops": len(all), "seconds": elapsed,
	})
	if err != nil {
		return err
	}
	fmt.Println(string(line))
	return nil
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-go:", err)
		os.Exit(1)
	}
}

func run() error {
	secs, err := strconv.ParseFloat(env("DLM_BENCH_SECONDS", "3"), 64)
	if err != nil || secs <= 0 {
		return fmt.Errorf("DLM_BENCH_SECONDS: %q", os.Getenv("DLM_BENCH_SECONDS"))
	}
	s := &setup{
		dlm:     env("DLM_BENCH_DLM", "127.0.0.1:37373"),
		redis:   env("DLM_BENCH_REDIS", "127.0.0.1:6379"),
		run:     env("DLM_BENCH_RUN", "run"),
		seconds: time.Duration(secs * float64(time.Second)),
	}
	// DLM_BENCH_GO_CPUPROFILE=FILE: a CPU profile of the whole run, for
	// `go tool pprof`.
	if path := os.Getenv("DLM_BENCH_GO_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
		go func() {
			// An interrupted run still writes its profile.
			ch := make(chan os.Signal, 1)
			signal.Notify(ch, os.Interrupt)
			<-ch
			pprof.StopCPUProfile()
			os.Exit(1)
		}()
	}
	// DLM_BENCH_GO_CLIENTS: which clients, in order (default "dlm redis";
	// "dlm-per-worker" is a *dlm.Client per goroutine, no pipelining
	// across goroutines: for comparison, not in the table's pairs).
	kinds := strings.Fields(env("DLM_BENCH_GO_CLIENTS", "dlm redis"))
	for _, workload := range strings.Fields(env("DLM_BENCH_WORKLOADS", "lock kv")) {
		if workload != "lock" && workload != "kv" {
			return fmt.Errorf("DLM_BENCH_WORKLOADS: unknown %q", workload)
		}
		for _, n := range strings.Fields(env("DLM_BENCH_WORKERS", "16 64")) {
			workers, err := strconv.Atoi(n)
			if err != nil || workers <= 0 {
				return fmt.Errorf("DLM_BENCH_WORKERS: %q", n)
			}
			for _, kind := range kinds {
				if err := measure(kind, workload, workers, s); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
