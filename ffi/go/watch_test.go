package dlm_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"dlm.example/dlm"
)

// next is the watch's next event, failing the test if none comes within
// 10 s or the watch ends.
func next(t *testing.T, w *dlm.Watch) dlm.Event {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		if !ok {
			t.Fatalf("the watch ended: %v", w.Err())
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
	}
	return dlm.Event{}
}

// A prefix watch sees a lock granted and released and a value put and
// erased, in order, with increasing revisions; owner and value only for
// its own entries. A watch resumed after a revision sees every event
// after it, the same ones, and nothing before.
func TestWatchSeesEveryChangeInOrderAndResumes(t *testing.T) {
	ctx := context.Background()
	me, other := dial(t), dial(t)
	prefix := unique(t, "w") + "/"
	w, err := me.Watch(ctx, prefix, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	start := w.Revision()
	if start == 0 {
		t.Fatal("no start revision")
	}
	l, err := me.Lock(ctx, prefix+"lock")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	vrev, err := me.Put(ctx, prefix+"value", []byte("hello"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := me.Erase(ctx, prefix+"value"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Put(ctx, prefix+"theirs", []byte("secret"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := me.Put(ctx, unique(t, "elsewhere"), []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		typ     dlm.EventType
		subject dlm.Subject
		name    string
	}{
		{dlm.EventGranted, dlm.SubjectLock, "lock"},
		{dlm.EventReleased, dlm.SubjectLock, "lock"},
		{dlm.EventPut, dlm.SubjectData, "value"},
		{dlm.EventErased, dlm.SubjectData, "value"},
		{dlm.EventPut, dlm.SubjectData, "theirs"},
	}
	var seen []dlm.Event
	last := start
	for i, wnt := range want {
		ev := next(t, w)
		if ev.Type != wnt.typ || ev.Subject != wnt.subject || ev.Name != prefix+wnt.name {
			t.Fatalf("event %d: %v %v %q, want %v %v %q", i, ev.Type, ev.Subject, ev.Name, wnt.typ, wnt.subject, wnt.name)
		}
		if ev.Revision <= last {
			t.Fatalf("event %d: revision %d after %d", i, ev.Revision, last)
		}
		last = ev.Revision
		seen = append(seen, ev)
	}
	if seen[0].Token != l.Token() || seen[1].Token != l.Token() || seen[0].Owner != me.ID() {
		t.Fatalf("lock events %+v %+v, token %d owner %q", seen[0], seen[1], l.Token(), me.ID())
	}
	if !bytes.Equal(seen[2].Value, []byte("hello")) || seen[2].DataRevision != vrev {
		t.Fatalf("put event %+v", seen[2])
	}
	if seen[4].Value != nil || seen[4].Owner != "" {
		t.Fatalf("another owner's put shows %q %q", seen[4].Owner, seen[4].Value)
	}
	if w.Revision() != last {
		t.Fatalf("Revision %d, last event %d", w.Revision(), last)
	}

	// Resumed after the start: the same events.
	again, err := me.Watch(ctx, prefix, start)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	for i := range want {
		ev := next(t, again)
		if ev.Revision != seen[i].Revision || ev.Type != seen[i].Type || ev.Token != seen[i].Token {
			t.Fatalf("resumed event %d: %+v, first time %+v", i, ev, seen[i])
		}
	}
	// After the second: the three after it, then the live ones.
	later, err := me.Watch(ctx, prefix, seen[1].Revision)
	if err != nil {
		t.Fatal(err)
	}
	defer later.Close()
	for i := 2; i < len(want); i++ {
		if ev := next(t, later); ev.Revision != seen[i].Revision {
			t.Fatalf("resumed after %d: %+v, want revision %d", seen[1].Revision, ev, seen[i].Revision)
		}
	}
	if _, err := me.Put(ctx, prefix+"live", []byte("1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, later); ev.Name != prefix+"live" || ev.Revision <= seen[4].Revision {
		t.Fatalf("live after resume: %+v", ev)
	}
	// One name: its changes only.
	one, err := me.WatchName(ctx, prefix+"one", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	if _, err := me.Put(ctx, prefix+"other", []byte("2"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := me.Put(ctx, prefix+"one", []byte("3"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, one); ev.Name != prefix+"one" || string(ev.Value) != "3" {
		t.Fatalf("name watch: %+v", ev)
	}
}

// A watch ends with its context (or Close, or its Client's Close), and
// says so.
func TestWatchEndsWithItsContext(t *testing.T) {
	c := dial(t)
	ctx, cancel := context.WithCancel(context.Background())
	w, err := c.Watch(ctx, unique(t, "w"), 0)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for range w.Events() {
	}
	mustIs(t, w.Err(), dlm.ErrCancelled, context.Canceled)

	w, err = c.Watch(context.Background(), unique(t, "w"), 0)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	for range w.Events() {
	}
	mustIs(t, w.Err(), dlm.ErrClosed)
	_, err = c.Watch(context.Background(), "x", 0)
	if err == nil {
		t.Fatal("Watch on a closed client")
	}
	_, err = dial(t).WatchName(context.Background(), "", 0)
	mustIs(t, err, dlm.ErrInvalidArgument)
}

// A resume from a revision the server never had: read the state again.
func TestWatchFromAnUnknownRevisionIsAConflict(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	if _, err := c.Put(ctx, unique(t, "v"), []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	_, err := c.Watch(ctx, "", 1<<62)
	mustIs(t, err, dlm.ErrConflict)
	var e *dlm.Error
	if !errors.As(err, &e) || e.Revision() == 0 || e.Revision() >= 1<<62 {
		t.Fatalf("err %v, want the current revision", err)
	}
	if !strings.Contains(err.Error(), "read the state again") {
		t.Fatalf("err %v does not say what to do", err)
	}
}

// On a server that lets a watcher leave 4 KiB unread and keeps 16
// changes: a watch whose events are not read while 16 KiB values are put
// is cut off; once more changes than the server keeps have been made,
// it is read again: it delivers what had reached it, in order, then ends
// with ErrConflict and the current revision (its events since
// are gone: read the state again).
func TestASlowWatchIsCutOffAndToldToReadAgain(t *testing.T) {
	srv := startServer(t, "--watch-budget", "4KiB", "--watch-history", "16")
	c := dialAt(t, srv.addr)
	ctx := context.Background()
	w, err := c.Watch(ctx, "big/", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	start := w.Revision()
	value := bytes.Repeat([]byte("v"), 8<<10)
	puts := 0
	// Bounded: at most 4,000 puts of 16 KiB encoded.
	for statAt(t, c, "WatchCutOff") == 0 {
		if puts >= 4000 {
			t.Fatal("the watch was never cut off")
		}
		for i := 0; i < 20; i++ {
			if _, err := c.Put(ctx, "big/k", value, time.Minute); err != nil {
				t.Fatal(err)
			}
			puts++
		}
	}
	last := start
	// Then more changes than the server keeps: those after the last event
	// the watch was sent are gone by the time it resumes.
	for i := 0; i < 20; i++ {
		if _, err := c.Put(ctx, "big/k", []byte("small"), time.Minute); err != nil {
			t.Fatal(err)
		}
		puts++
	}
	for ev := range w.Events() {
		if ev.Revision != last+1 {
			t.Fatalf("revision %d after %d", ev.Revision, last)
		}
		last = ev.Revision
	}
	err = w.Err()
	mustIs(t, err, dlm.ErrConflict)
	var e *dlm.Error
	if !errors.As(err, &e) || e.Revision() < start+uint64(puts) {
		t.Fatalf("err %v: current revision %d, want at least %d", err, e.Revision(), start+uint64(puts))
	}
	if last-start >= uint64(puts) {
		t.Fatalf("all %d events came: it was not cut off", puts)
	}
	// Watching again from the current revision works.
	w2, err := c.Watch(ctx, "big/", e.Revision())
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if _, err := c.Put(ctx, "big/after", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, w2); ev.Name != "big/after" || ev.Revision != e.Revision()+1 {
		t.Fatalf("after: %+v (current was %d)", ev, e.Revision())
	}
}

// With a custom Encoder, a watched value is decoded by it.
func TestWatchDecodesWithTheClientsEncoder(t *testing.T) {
	c := dial(t, dlm.WithEncoder(&hexEncoder{}))
	ctx := context.Background()
	name := unique(t, "hex")
	w, err := c.WatchName(ctx, name, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := c.Put(ctx, name, []byte("plain"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, w); string(ev.Value) != "plain" {
		t.Fatalf("value %q", ev.Value)
	}
}

// In a cluster: a watch sees a session-bound lock granted on the leader,
// and released when the session's connection dies; a follower's watch
// sees the same changes with the same revisions, and a watch resumed
// from the grant's revision, on any member, sees the release.
func TestClusterWatchAndSession(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	cl := startCluster(t, 3)
	leader := cl.leader()
	follower := ""
	for node, m := range cl.members {
		if node != leader {
			follower = m.addr
			break
		}
	}
	c := dialCluster(t, cl.servers())
	f := dialAt(t, follower, dlm.WithIOTimeout(long))
	ctx := context.Background()
	name := unique(t, "clustered")
	w, err := c.WatchName(ctx, name, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	fw, err := f.WatchName(ctx, name, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	s, err := c.Session(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err := s.Lock(ctx, name, dlm.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	granted := next(t, w)
	if granted.Type != dlm.EventGranted || granted.Token != l.Token() {
		t.Fatalf("granted: %+v", granted)
	}
	dlm.BreakSession(s)
	released := next(t, w)
	if released.Type != dlm.EventReleased || released.Token != l.Token() || released.Revision <= granted.Revision {
		t.Fatalf("released: %+v after %+v", released, granted)
	}
	<-s.Done()
	for _, want := range []dlm.Event{granted, released} {
		if ev := next(t, fw); ev.Revision != want.Revision || ev.Type != want.Type || ev.Token != want.Token {
			t.Fatalf("on the follower: %+v, on the first: %+v", ev, want)
		}
	}
	// Resumed from the grant: the same release.
	w2, err := c.WatchName(ctx, name, granted.Revision)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if ev := next(t, w2); ev.Revision != released.Revision || ev.Type != dlm.EventReleased {
		t.Fatalf("resumed: %+v, the first time %+v", ev, released)
	}
	// On every member, including one nobody watched before: each keeps
	// the history from its start, so a watch resumes wherever its
	// client lands after a failover.
	for node, m := range cl.members {
		mc := dialAt(t, m.addr, dlm.WithIOTimeout(long))
		mw, err := mc.WatchName(ctx, name, granted.Revision)
		if err != nil {
			t.Fatalf("resumed on member %d: %v", node, err)
		}
		if ev := next(t, mw); ev.Revision != released.Revision || ev.Type != dlm.EventReleased {
			t.Fatalf("resumed on member %d: %+v, the first time %+v", node, ev, released)
		}
		mw.Close()
	}
}
