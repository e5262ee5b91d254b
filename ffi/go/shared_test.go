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

// A value shared with an identity is read by a client authenticated as
// it (whatever its ID), with its owner's ID; everybody else gets
// ErrNotOwner; writing stays the owner's; ReadersAny admits anonymous
// clients; each Put says its readers anew.
func TestSharedValues(t *testing.T) {
	ctx := context.Background()
	owner := dial(t, dlm.WithCredentials(identityName, identitySecret))
	reader := dial(t, dlm.WithCredentials(readerName, readerSecret))
	stranger := dial(t)
	// The owner's own ID, without its identity, is another owner.
	impostor := dial(t, dlm.WithClientID(owner.ID()))
	name := unique(t, "cfg")

	rev, err := owner.Put(ctx, name, []byte("v1"), time.Minute, dlm.Readers("nobody-here", readerName))
	if err != nil {
		t.Fatal(err)
	}
	v, err := reader.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(v.Data, []byte("v1")) || v.Revision != rev || v.Owner != owner.ID() {
		t.Fatalf("reader got %+v, want v1 at %d by %s", v, rev, owner.ID())
	}
	if v, err := owner.Get(ctx, name); err != nil || v.Owner != owner.ID() {
		t.Fatalf("owner's Get: %+v, %v", v, err)
	}
	for _, c := range []*dlm.Client{stranger, impostor} {
		_, err := c.Get(ctx, name)
		mustIs(t, err, dlm.ErrNotOwner)
	}

	// A reader cannot write or erase it.
	_, err = reader.Put(ctx, name, []byte("mine"), time.Minute)
	mustIs(t, err, dlm.ErrNotOwner)
	_, err = reader.Put(ctx, name, []byte("mine"), time.Minute, dlm.ReadersAny())
	mustIs(t, err, dlm.ErrNotOwner)
	mustIs(t, reader.Erase(ctx, name), dlm.ErrNotOwner)

	// Any client; then private again with a plain Put.
	if _, err := owner.Put(ctx, name, []byte("v2"), time.Minute, dlm.ReadersAny()); err != nil {
		t.Fatal(err)
	}
	if v, err := stranger.Get(ctx, name); err != nil || string(v.Data) != "v2" || v.Owner != owner.ID() {
		t.Fatalf("stranger's Get of a value for any: %+v, %v", v, err)
	}
	r3, err := owner.Put(ctx, name, []byte("v3"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*dlm.Client{stranger, reader} {
		_, err := c.Get(ctx, name)
		mustIs(t, err, dlm.ErrNotOwner)
	}

	// A compare-and-set replaces value and readers together.
	if _, err := owner.PutIf(ctx, name, []byte("v4"), time.Minute, r3, dlm.Readers(readerName)); err != nil {
		t.Fatal(err)
	}
	if v, err := reader.Get(ctx, name); err != nil || string(v.Data) != "v4" {
		t.Fatalf("reader's Get after PutIf: %+v, %v", v, err)
	}
}

func TestSharedValueArguments(t *testing.T) {
	ctx := context.Background()
	c := dial(t)
	name := unique(t, "bad")
	many := make([]string, 33)
	for i := range many {
		many[i] = "r" + strings.Repeat("x", i)
	}
	for _, bad := range [][]dlm.PutOption{
		{dlm.Readers("a,b")},
		{dlm.Readers(".hidden")},
		{dlm.Readers("")},
		{dlm.Readers(many...)},
		{dlm.Readers("alice"), dlm.ReadersAny()},
	} {
		_, err := c.Put(ctx, name, []byte("x"), time.Minute, bad...)
		if !errors.Is(err, dlm.ErrInvalidArgument) {
			t.Errorf("%v: %v, want ErrInvalidArgument", bad, err)
		}
	}
	_, err := c.Get(ctx, name)
	mustIs(t, err, dlm.ErrNotFound)
}
