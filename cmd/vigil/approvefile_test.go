package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/identity"
)

func sampleApproval(t testing.TB) []byte {
	k, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cid, err := identity.NewClusterID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := identity.NewCommand(cid, &identity.SetThreshold{Threshold: 2}, time.Now(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c.Sign(k)
	p := filepath.Join(t.TempDir(), "a.json")
	if _, err := writeApprovalFile(p, c); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzReadApprovalFile: an approval file is untrusted input. Reading never panics, and whatever
// is accepted is a verified command whose file, written again, reads back to the same command.
func FuzzReadApprovalFile(f *testing.F) {
	f.Add(sampleApproval(f))
	f.Add([]byte(`{"format":"vigil-command/v1"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "in.json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, _, err := readApprovalFile(p)
		if err != nil {
			return
		}
		q := filepath.Join(dir, "out.json")
		if _, err := writeApprovalFile(q, c); err != nil {
			t.Fatalf("accepted command does not write back: %v", err)
		}
		c2, _, err := readApprovalFile(q)
		if err != nil || !bytes.Equal(c2.Encode(), c.Encode()) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func TestApprovalFileOversized(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(p, bytes.Repeat([]byte(" "), maxApprovalFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readApprovalFile(p); err == nil {
		t.Fatal("oversized file accepted")
	}
}
