package agent

import (
	"bytes"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/identity"
)

func key(t testing.TB) identity.PrivateKey {
	t.Helper()
	k, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRotationRequestRoundTrip(t *testing.T) {
	old, nw := key(t), key(t)
	r, err := NewRotationRequest("worker-1", old, nw, time.Unix(1_700_000_000, 5))
	if err != nil {
		t.Fatal(err)
	}
	raw := r.Encode()
	if !bytes.HasPrefix(raw, []byte("-----BEGIN VIGIL KEY ROTATION REQUEST-----")) {
		t.Fatalf("pem: %s", raw)
	}
	got, err := ParseRotationRequest(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Verify(); err != nil {
		t.Fatal(err)
	}
	if got.Name != "worker-1" || !got.OldKey.Equal(old.Public()) || !got.NewKey.Equal(nw.Public()) || !got.IssuedAt.Equal(r.IssuedAt) {
		t.Fatalf("parsed %+v", got)
	}
	if c := got.Command(); c.Name != "worker-1" || !c.NewKey.Equal(nw.Public()) {
		t.Fatalf("command %+v", c)
	}
}

// TestRotationRequestRejects: every tampered field breaks a signature; malformed PEM is refused
// with ErrBadRotationRequest.
func TestRotationRequestRejects(t *testing.T) {
	old, nw, other := key(t), key(t), key(t)
	r, err := NewRotationRequest("worker-1", old, nw, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(r.Encode())
	for i := range blk.Bytes { // flip every byte: parse or verify must fail
		b := bytes.Clone(blk.Bytes)
		b[i] ^= 0x01
		p, err := ParseRotationRequest(pem.EncodeToMemory(&pem.Block{Type: RotationPEMType, Bytes: b}))
		if err == nil {
			err = p.Verify()
		}
		if !errors.Is(err, ErrBadRotationRequest) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	swapped := r
	swapped.NewKey = other.Public() // a thief's key, signed by the thief only
	swapped.NewSig = other.Sign(swapped.signedBytes())
	if err := swapped.Verify(); !errors.Is(err, ErrBadRotationRequest) || !strings.Contains(err.Error(), "old key") {
		t.Fatalf("substituted new key: %v", err)
	}
	for name, data := range map[string][]byte{
		"no pem":     []byte("hello"),
		"wrong type": pem.EncodeToMemory(&pem.Block{Type: "VIGIL AGENT KEY", Bytes: blk.Bytes}),
		"trailing":   append(r.Encode(), []byte("junk")...),
		"short":      pem.EncodeToMemory(&pem.Block{Type: RotationPEMType, Bytes: blk.Bytes[:10]}),
		"huge":       bytes.Repeat([]byte("A"), 5000),
	} {
		if _, err := ParseRotationRequest(data); !errors.Is(err, ErrBadRotationRequest) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := NewRotationRequest("worker-1", old, old, time.Now()); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("same key: %v", err)
	}
	if _, err := NewRotationRequest("Bad Name", old, nw, time.Now()); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad name: %v", err)
	}
}

func FuzzParseRotationRequest(f *testing.F) {
	old, nw := key(f), key(f)
	r, _ := NewRotationRequest("a", old, nw, time.Unix(1, 0))
	f.Add(r.Encode())
	f.Add([]byte("-----BEGIN VIGIL KEY ROTATION REQUEST-----\n-----END VIGIL KEY ROTATION REQUEST-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseRotationRequest(data)
		if err != nil {
			if !errors.Is(err, ErrBadRotationRequest) {
				t.Fatalf("error %v does not wrap ErrBadRotationRequest", err)
			}
			return
		}
		_ = p.Verify()
		q, err := ParseRotationRequest(p.Encode())
		if err != nil || q.Name != p.Name || !bytes.Equal(q.OldSig, p.OldSig) {
			t.Fatalf("re-encoding does not parse back: %v", err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.Key = key(t)
	good.Nodes = []string{"/ip4/127.0.0.1/tcp/7400/p2p/" + key(t).ID().String()}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		mut   func(*Config)
		field string
	}{
		"no key":        {func(c *Config) { c.Key = identity.PrivateKey{} }, "key"},
		"no nodes":      {func(c *Config) { c.Nodes = nil }, "nodes"},
		"bad addr":      {func(c *Config) { c.Nodes = []string{"nope"} }, "nodes[0]"},
		"no p2p":        {func(c *Config) { c.Nodes = []string{"/ip4/127.0.0.1/tcp/1"} }, "nodes[0]"},
		"security":      {func(c *Config) { c.Security = "basic" }, "security"},
		"min":           {func(c *Config) { c.ReconnectMin = 0 }, "reconnect_min"},
		"max below min": {func(c *Config) { c.ReconnectMax = time.Millisecond }, "reconnect_max"},
	} {
		c := good
		tc.mut(&c)
		err := c.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v (want field %s)", name, err, tc.field)
		}
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.key")
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", st.Mode(), err)
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil || k2.ID() != k1.ID() {
		t.Fatalf("reload: %v %v", k2.ID(), err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(path); !errors.Is(err, identity.ErrKeyFilePermissions) {
		t.Fatalf("world-readable key: %v", err)
	}
	nodeKey := filepath.Join(t.TempDir(), "node.key")
	if err := identity.WriteKeyFile(nodeKey, identity.RoleNode, key(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(nodeKey); err == nil {
		t.Fatal("a node key loaded as an agent key")
	}
}

func TestRefusedErrorIsThrottled(t *testing.T) {
	thr := fmt.Errorf("wrapped: %w", &RefusedError{Code: "throttled", Rule: "response: throttled at 1 msg/s until 2026-03-01T12:15:00Z", Hop: "sender-node"})
	if !errors.Is(thr, ErrThrottled) {
		t.Fatal("a throttled refusal is not ErrThrottled")
	}
	var re *RefusedError
	if !errors.As(thr, &re) || re.Code != "throttled" {
		t.Fatalf("errors.As: %v", re)
	}
	for _, code := range []string{"no_capability", "sender_inactive", "rate_limited", ""} {
		if errors.Is(&RefusedError{Code: code}, ErrThrottled) {
			t.Errorf("code %q is ErrThrottled", code)
		}
	}
	if errors.Is(ErrNotConnected, ErrThrottled) {
		t.Error("ErrNotConnected is ErrThrottled")
	}
}
