package admin

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/identity"
)

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"default", func(*Config) {}, ""},
		{"no logger", func(c *Config) { c.Logger = nil }, "logger"},
		{"no clock", func(c *Config) { c.Now = nil }, "now"},
		{"tiny request cap", func(c *Config) { c.MaxRequestBytes = 1024 }, "max_request_bytes"},
		{"audit limits", func(c *Config) { c.AuditMaxLimit = 10 }, "audit_default_limit"},
		{"header timeout", func(c *Config) { c.ReadHeaderTimeout = 0 }, "read_header_timeout"},
		{"idle timeout", func(c *Config) { c.IdleTimeout = -1 }, "idle_timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("want ErrInvalidConfig naming %s, got %v", tc.field, err)
			}
		})
	}
	// An invalid config is reported by Serve*, and Handler refuses every call.
	c := DefaultConfig()
	c.Logger = nil
	s := NewServer(nil, c)
	if err := s.ServeUnix(filepath.Join(t.TempDir(), "s")); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("ServeUnix with a bad config: %v", err)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/vigil.admin.v1.AdminService/Status", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("handler with a bad config: %d", rec.Code)
	}
}

func TestServeTLSNeedsKey(t *testing.T) {
	s := NewServer(nil, DefaultConfig())
	defer s.Close()
	if err := s.ServeTLS(nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("want ErrInvalidConfig, got %v", err)
	}
}

// TestUnixSocketLifecycle: the socket is 0600, a stale socket is replaced, a regular file is
// never clobbered, Close removes the socket and is idempotent, and Serve after Close fails.
func TestUnixSocketLifecycle(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "admin.sock")
	s := NewServer(nil, DefaultConfig())
	if err := s.ServeUnix(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v", fi.Mode(), err)
	}
	// A second server does not steal a live socket.
	s2 := NewServer(nil, DefaultConfig())
	defer s2.Close()
	if err := s2.ServeUnix(path); !errors.Is(err, ErrSocket) {
		t.Fatalf("want ErrSocket for a live socket, got %v", err)
	}
	// It replaces a stale one (a crashed server's).
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = ln.Close()
	if err := s2.ServeUnix(stale); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket not removed: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 || ents[0].Name() != "stale.sock" {
		t.Fatalf("left behind in the socket directory: %v", ents) // stale.sock: s2 still serves it
	}
	if err := s.ServeUnix(path); !errors.Is(err, ErrClosed) {
		t.Fatalf("serve after close: %v", err)
	}
	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	s3 := NewServer(nil, DefaultConfig())
	defer s3.Close()
	if err := s3.ServeUnix(regular); !errors.Is(err, ErrSocket) {
		t.Fatalf("want ErrSocket over a regular file, got %v", err)
	}
	if b, _ := os.ReadFile(regular); string(b) != "keep" {
		t.Fatal("regular file clobbered")
	}
}

func TestRoleOf(t *testing.T) {
	key := func() identity.PrivateKey {
		k, err := identity.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	r := identity.NewRegistry()
	if got := roleOf(r, key().ID(), time.Now()); got != RoleUnknown {
		t.Fatalf("empty registry: %v", got)
	}
	if RoleLocal.String() != "local" || Role(99).String() != "unknown" {
		t.Fatal("Role.String")
	}
	if _, ok := CallerFrom(context.Background()); ok {
		t.Fatal("caller from an empty context")
	}
}

func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"", "site=a", "site=a,role=b", "=", "a=b=c", ",", " k = v ", strings.Repeat("k=v,", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseSelector(s)
		if err != nil {
			return
		}
		if len(s) > maxSelectorLen {
			t.Fatalf("accepted %d bytes", len(s))
		}
		for k := range m {
			if k == "" {
				t.Fatal("empty key accepted")
			}
		}
	})
}

func FuzzPeerFromRaw(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("not a certificate"))
	f.Add([]byte{0x30, 0x82, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		if id, err := peerFromRaw([][]byte{b}); err == nil && id.IsZero() {
			t.Fatal("zero id without error")
		}
	})
}

func TestTidyMessage(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`identity: name: agent "a1" already exists: already exists`, `identity: name: agent "a1" already exists`},
		{"identity: identity: version: got 5, want 2: version conflict: version conflict", "identity: version: got 5, want 2: version conflict"},
		{"identity: nonce 0a already used: replayed nonce", "identity: nonce 0a already used: replayed nonce"},
		{"admin: agent: required: invalid", "admin: agent: required: invalid"},
		{"no colon", "no colon"},
		{"", ""},
	} {
		if got := tidyMessage(tc.in); got != tc.want {
			t.Errorf("tidyMessage(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
