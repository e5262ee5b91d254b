package dlm_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dlm.example/dlm"
)

// long bounds elections and failovers on a loaded two-core machine: an
// upper bound only, nothing waits it out.
const long = 60 * time.Second

// cluster is a real 3-member dlm cluster started by the test.
type cluster struct {
	t       *testing.T
	members map[int]*server
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startCluster starts n members (their peer ports free, client ports 0).
//
// A peer port is picked free and bound by its member a moment later: a
// test of another package (go test runs packages side by side) may take
// it in between, and that member then exits before it listens. The
// cluster is then started again on new ports (a fresh run met this once).
func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	bin, err := serverBinary()
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		c, err := tryCluster(t, bin, n)
		if err == nil {
			t.Cleanup(c.stop)
			return c
		}
		if attempt == 5 {
			t.Fatal(err)
		}
		t.Logf("cluster start %d failed (%v): again on new ports", attempt, err)
	}
}

// tryCluster starts n members once; on a failure, it stops those started.
func tryCluster(t *testing.T, bin string, n int) (*cluster, error) {
	var peers []string
	for node := 1; node <= n; node++ {
		peers = append(peers, fmt.Sprintf("%d=127.0.0.1:%d", node, freePort(t)))
	}
	c := &cluster{t: t, members: map[int]*server{}}
	for node := 1; node <= n; node++ {
		s, err := startProcess("dlm-server", exec.Command(bin, "127.0.0.1", "0",
			"--node", strconv.Itoa(node), "--peers", strings.Join(peers, ",")))
		if err != nil {
			c.stop()
			return nil, err
		}
		c.members[node] = s
	}
	return c, nil
}

func (c *cluster) stop() {
	for _, s := range c.members {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

// servers is the members' client addresses, "a:1,b:2,c:3".
func (c *cluster) servers() string {
	var list []string
	for node := 1; node <= len(c.members)+3; node++ {
		if s, ok := c.members[node]; ok {
			list = append(list, s.addr)
		}
	}
	return strings.Join(list, ",")
}

// leaderOf asks a member who leads ({"Action":"Cluster"}); 0 if it cannot
// say now (an election).
func leaderOf(addr string) int {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("{\"Action\":\"Cluster\"}\n")); err != nil {
		return 0
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		return 0
	}
	var answer struct {
		Cluster struct{ Leader int }
	}
	if json.Unmarshal(line, &answer) != nil {
		return 0
	}
	return answer.Cluster.Leader
}

// leader waits until every running member names one running leader.
func (c *cluster) leader() int {
	c.t.Helper()
	var found int
	waitFor(c.t, "a leader all members agree on", func() bool {
		found = 0
		for _, s := range c.members {
			l := leaderOf(s.addr)
			if l == 0 || (found != 0 && l != found) {
				return false
			}
			found = l
		}
		_, running := c.members[found]
		return running
	})
	return found
}

// kill kills a member (SIGKILL).
func (c *cluster) kill(node int) {
	s := c.members[node]
	delete(c.members, node)
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

// waitFor polls observable state until it holds, failing the test after
// long.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(long)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dialCluster(t *testing.T, servers string) *dlm.Client {
	t.Helper()
	return dialAt(t, servers, dlm.WithIOTimeout(long))
}

// The leader is killed while one client holds an auto-renewed lock,
// another waits for it and a third writes: the lock survives (extended by
// its token through the new leader), the waiter is queued again there and
// granted within its deadline, and every acknowledged put applied once.
func TestHolderWaiterAndWriterRideThroughTheLeadersDeath(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	ctx := context.Background()
	cl := startCluster(t, 3)
	leader := cl.leader()
	oldAddr := cl.members[leader].addr
	servers := cl.servers()
	holder := dialCluster(t, servers)
	waiter := dialCluster(t, servers)
	writer := dialCluster(t, servers)
	observer := dialCluster(t, servers)
	if got := holder.Server(); got != oldAddr {
		t.Fatalf("holder talks to %s, not the leader %s", got, oldAddr)
	}

	ttl := 15 * time.Second
	lock, err := holder.Lock(ctx, "resource", dlm.TTL(ttl), dlm.AutoRenew())
	if err != nil {
		t.Fatal(err)
	}
	token := lock.Token()

	type grant struct {
		token  uint64
		server string
		err    error
	}
	granted := make(chan grant, 1)
	waitCtx, cancelWait := context.WithTimeout(ctx, long)
	defer cancelWait()
	go func() {
		got, err := waiter.Lock(waitCtx, "resource", dlm.TTL(ttl), dlm.Wait(long))
		if err != nil {
			granted <- grant{err: err}
			return
		}
		g := grant{token: got.Token(), server: waiter.Server()}
		g.err = got.Unlock(ctx)
		granted <- g
	}()
	awaiting := func(n uint64) func() bool {
		return func() bool {
			st, err := observer.Stats(ctx)
			return err == nil && st["AWait"] == n
		}
	}
	// The observer talks to the leader too: its AWait is the leader's.
	waitFor(t, "the waiter to queue", awaiting(1))

	var (
		stop     atomic.Bool
		acked    atomic.Int64
		writeErr error
		revision uint64
		wg       sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= 20000 && !stop.Load(); i++ {
			// A compare-and-set chain: a put applied twice would make
			// its resend a conflict.
			rev, err := writer.PutIf(ctx, "chain", []byte(strconv.Itoa(i)), 10*time.Minute, revision)
			if err != nil {
				writeErr = fmt.Errorf("chain put %d: %w", i, err)
				return
			}
			revision = rev
			if _, err := writer.Put(ctx, fmt.Sprintf("k%d", i), []byte(strconv.Itoa(i)), 10*time.Minute); err != nil {
				writeErr = fmt.Errorf("put k%d: %w", i, err)
				return
			}
			acked.Store(int64(i))
		}
	}()
	waitFor(t, "the writer to write", func() bool { return acked.Load() >= 20 })

	deadlineBefore := time.Now().Add(lock.Remaining())
	cl.kill(leader)
	newLeader := cl.leader()
	if newLeader == leader {
		t.Fatal("the dead member still leads")
	}
	newAddr := cl.members[newLeader].addr

	atKill := acked.Load()
	waitFor(t, "writes after the failover", func() bool { return acked.Load() >= atKill+20 || stop.Load() })

	// Extended through the new leader: its deadline moved past where it
	// stood when the leader died, same grant, never reported lost.
	waitFor(t, "an extension after the failover", func() bool {
		return time.Now().Add(lock.Remaining()).After(deadlineBefore.Add(time.Second))
	})
	if got := holder.Server(); got != newAddr {
		t.Fatalf("holder talks to %s, not the new leader %s", got, newAddr)
	}
	select {
	case <-lock.Lost():
		t.Fatal("the lock was reported lost")
	default:
	}
	st, err := holder.TestLock(ctx, "resource")
	if err != nil || st.Status != dlm.LockMine || st.Token != token {
		t.Fatalf("TestLock = %+v, %v; want mine with token %d", st, err, token)
	}

	// The waiter queued again on the new leader, still waiting.
	waitFor(t, "the waiter to queue again", awaiting(1))
	select {
	case g := <-granted:
		t.Fatalf("the waiter returned while the lock was held: %+v", g)
	default:
	}
	if err := lock.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	g := <-granted
	if g.err != nil {
		t.Fatalf("the waiter: %v", g.err)
	}
	if g.token <= token || g.server != newAddr {
		t.Fatalf("the waiter got token %d from %s; want > %d from %s", g.token, g.server, token, newAddr)
	}

	stop.Store(true)
	wg.Wait()
	if writeErr != nil {
		t.Fatal(writeErr)
	}
	n := int(acked.Load())
	v, err := writer.Get(ctx, "chain")
	if err != nil || string(v.Data) != strconv.Itoa(n) || v.Revision != revision {
		t.Fatalf("chain = %q at %d, %v; want %d at %d", v.Data, v.Revision, err, n, revision)
	}
	for i := 1; i <= n; i++ {
		v, err := writer.Get(ctx, fmt.Sprintf("k%d", i))
		if err != nil || string(v.Data) != strconv.Itoa(i) {
			t.Fatalf("k%d = %q, %v", i, v.Data, err)
		}
	}
}

// Given one follower's address, a client finds the leader, and follows
// the next one when it dies (it knows the members from the cluster
// itself, not from its argument).
func TestAClientGivenOneFollowerFindsAndFollowsTheLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	ctx := context.Background()
	cl := startCluster(t, 3)
	leader := cl.leader()
	var follower int
	for node := range cl.members {
		if node != leader {
			follower = node
		}
	}
	c := dialCluster(t, cl.members[follower].addr)
	if got := c.Server(); got != cl.members[leader].addr {
		t.Fatalf("talks to %s, not the leader %s", got, cl.members[leader].addr)
	}
	first, err := c.Put(ctx, "followed", []byte("1"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	cl.kill(leader)
	newLeader := cl.leader()
	rev, err := c.PutIf(ctx, "followed", []byte("2"), time.Minute, first)
	if err != nil || rev != first+1 {
		t.Fatalf("PutIf = %d, %v; want %d", rev, err, first+1)
	}
	if got := c.Server(); got != cl.members[newLeader].addr {
		t.Fatalf("talks to %s, not the new leader %s", got, cl.members[newLeader].addr)
	}
}

// Once no member answers, a call fails with ErrUnavailable (within its
// time, saying why); a list that is not one is refused at Dial.
func TestUnavailableOnlyOnceNoMemberAnswers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	ctx := context.Background()
	cl := startCluster(t, 3)
	cl.leader()
	c := dialAt(t, cl.servers(), dlm.WithIOTimeout(3*time.Second), dlm.WithConnectTimeout(time.Second))
	if _, err := c.Put(ctx, "x", []byte("1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	for node := range cl.members {
		cl.kill(node)
	}
	start := time.Now()
	_, err := c.Get(ctx, "x")
	mustIs(t, err, dlm.ErrUnavailable)
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("gave up after %v", took)
	}
	_, err = dlm.Dial(ctx, "127.0.0.1:1,nonsense")
	mustIs(t, err, dlm.ErrInvalidArgument)
}

// DLM_SERVER is the list when Dial is given none.
func TestDLMServerNamesTheServers(t *testing.T) {
	t.Setenv("DLM_SERVER", "127.0.0.1:1,"+addr)
	c := dialAt(t, "")
	if c.Server() != addr {
		t.Fatalf("talks to %s, not %s", c.Server(), addr)
	}
}
