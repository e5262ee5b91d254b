package dlm_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"dlm.example/dlm"
)

// The table codec's vectors from PROTOCOL.md section 2, as stored by the
// default encoder and read back raw.
func TestTableCodecVectors(t *testing.T) {
	ctx := context.Background()
	id := unique(t, "id")
	table := dial(t, dlm.WithClientID(id))
	raw := dial(t, dlm.WithClientID(id), dlm.WithEncoder(rawEncoder{}))
	for _, v := range []struct{ plain, stored string }{
		{"{", "a^"},
		{"\x00\xff", "1128"},
		{`{"Status":"Locked"}`, "a^1laBaMagaMa$am1l1t1l1za@a8aJaHah1laP"},
	} {
		key := unique(t, "v")
		if _, err := table.Put(ctx, key, []byte(v.plain), 10*time.Second); err != nil {
			t.Fatal(err)
		}
		got, err := raw.Get(ctx, key)
		if err != nil || string(got.Data) != v.stored {
			t.Errorf("%q stored as %q (%v), want %q", v.plain, got.Data, err, v.stored)
		}
	}
	// All 256 byte values round-trip.
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	key := unique(t, "all")
	if _, err := table.Put(ctx, key, all, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got, err := table.Get(ctx, key); err != nil || !bytes.Equal(got.Data, all) {
		t.Fatalf("256 bytes came back as %x, %v", got.Data, err)
	}
	// A stored string the table codec cannot decode.
	if _, err := raw.Put(ctx, key, []byte("odd"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	_, err := table.Get(ctx, key)
	mustIs(t, err, dlm.ErrEncoding)
}

func TestSealedEncoder(t *testing.T) {
	ctx := context.Background()
	key, err := dlm.NewSealedKey()
	if err != nil || len(key) != dlm.SealedKeySize {
		t.Fatalf("NewSealedKey = %x, %v", key, err)
	}
	id := unique(t, "id")
	sealed := dial(t, dlm.WithClientID(id), dlm.WithSealedKey(key))
	name := unique(t, "cfg")
	secret := []byte("db-password: hunter2")
	if _, err := sealed.Put(ctx, name, secret, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if v, err := sealed.Get(ctx, name); err != nil || !bytes.Equal(v.Data, secret) {
		t.Fatalf("sealed round trip = %q, %v", v.Data, err)
	}

	// What the server stores is ciphertext.
	raw := dial(t, dlm.WithClientID(id), dlm.WithEncoder(rawEncoder{}))
	stored, err := raw.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(stored.Data), "dlmseal1.") || bytes.Contains(stored.Data, []byte("hunter2")) {
		t.Fatalf("stored value %q is not sealed", stored.Data)
	}
	// Sealing twice gives different ciphertexts (a fresh nonce each time).
	if _, err := sealed.Put(ctx, name, secret, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if again, _ := raw.Get(ctx, name); bytes.Equal(again.Data, stored.Data) {
		t.Fatal("the same value sealed twice gave the same ciphertext")
	}

	// The wrong key, or no key, cannot read it.
	otherKey, _ := dlm.NewSealedKey()
	_, err = dial(t, dlm.WithClientID(id), dlm.WithSealedKey(otherKey)).Get(ctx, name)
	mustIs(t, err, dlm.ErrEncoding)
	_, err = dial(t, dlm.WithClientID(id)).Get(ctx, name)
	mustIs(t, err, dlm.ErrEncoding)
	// A sealed value is bound to its key name: copied elsewhere, it fails.
	moved := unique(t, "moved")
	if _, err := raw.Put(ctx, moved, stored.Data, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	_, err = sealed.Get(ctx, moved)
	mustIs(t, err, dlm.ErrEncoding)

	// The last encoder option wins.
	plain := dial(t, dlm.WithClientID(id), dlm.WithSealedKey(key), dlm.WithEncoder(rawEncoder{}))
	if v, err := plain.Get(ctx, name); err != nil || !strings.HasPrefix(string(v.Data), "dlmseal1.") {
		t.Fatalf("WithEncoder after WithSealedKey read %q, %v", v.Data, err)
	}
	resealed := dial(t, dlm.WithClientID(id), dlm.WithEncoder(rawEncoder{}), dlm.WithSealedKey(key))
	if v, err := resealed.Get(ctx, name); err != nil || !bytes.Equal(v.Data, secret) {
		t.Fatalf("WithSealedKey after WithEncoder read %q, %v", v.Data, err)
	}
}

// hexEncoder is a custom Go encoder: hex with a prefix, counting its calls.
type hexEncoder struct {
	encodes, decodes atomic.Int32
}

func (h *hexEncoder) Encode(name string, b []byte) (string, error) {
	h.encodes.Add(1)
	return "hex:" + hex.EncodeToString(b), nil
}

func (h *hexEncoder) Decode(name, s string) ([]byte, error) {
	h.decodes.Add(1)
	rest, ok := strings.CutPrefix(s, "hex:")
	if !ok {
		return nil, errNotHex
	}
	return hex.DecodeString(rest)
}

var errNotHex = errors.New("not a hex value")

func TestCustomEncoder(t *testing.T) {
	ctx := context.Background()
	id := unique(t, "id")
	enc := &hexEncoder{}
	c := dial(t, dlm.WithClientID(id), dlm.WithEncoder(enc))
	raw := dial(t, dlm.WithClientID(id), dlm.WithEncoder(rawEncoder{}))
	name := unique(t, "k")
	if _, err := c.Put(ctx, name, []byte("hi\x00"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if stored, err := raw.Get(ctx, name); err != nil || string(stored.Data) != "hex:686900" {
		t.Fatalf("stored %q, %v", stored.Data, err)
	}
	if v, err := c.Get(ctx, name); err != nil || string(v.Data) != "hi\x00" {
		t.Fatalf("Get = %q, %v", v.Data, err)
	}
	if enc.encodes.Load() == 0 || enc.decodes.Load() == 0 {
		t.Fatal("the Go encoder was not called")
	}

	// Output larger than libdlm's first buffer (twice the input) is asked
	// for again with the size it needs.
	big := bytes.Repeat([]byte{0xab}, 5000)
	if _, err := c.Put(ctx, name, big, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, name); err != nil || !bytes.Equal(v.Data, big) {
		t.Fatalf("big value: %d bytes, %v", len(v.Data), err)
	}

	// The encoder's own error comes back wrapped.
	if _, err := raw.Put(ctx, name, []byte("plain text"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	_, err := c.Get(ctx, name)
	mustIs(t, err, dlm.ErrEncoding, errNotHex)
}

type failingEncoder struct{ mode string }

var errNope = errors.New("nope")

func (f failingEncoder) Encode(string, []byte) (string, error) {
	switch f.mode {
	case "panic":
		panic("boom")
	case "utf8":
		return "\xff\xfe", nil
	}
	return "", errNope
}

func (f failingEncoder) Decode(string, string) ([]byte, error) { return nil, errNope }

func TestCustomEncoderFailures(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []string{"error", "panic", "utf8"} {
		c := dial(t, dlm.WithEncoder(failingEncoder{mode}))
		name := unique(t, mode)
		_, err := c.Put(ctx, name, []byte("v"), 10*time.Second)
		mustIs(t, err, dlm.ErrEncoding)
		if mode == "error" && !errors.Is(err, errNope) {
			t.Errorf("the encoder's error is not wrapped: %v", err)
		}
		if mode == "panic" && !strings.Contains(err.Error(), "boom") {
			t.Errorf("the panic is not reported: %v", err)
		}
		if mode == "utf8" && !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("invalid UTF-8 is not reported: %v", err)
		}
		// Nothing was stored.
		_, err = dial(t, dlm.WithClientID(c.ID())).Get(ctx, name)
		mustIs(t, err, dlm.ErrNotFound)
	}
}
