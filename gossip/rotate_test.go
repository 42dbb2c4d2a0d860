package gossip

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/vigil-mesh/vigil/identity"
)

// TestMeshKeyringOps: install, use and remove change memberlist's keyring and the file
// together; refused operations (unknown fingerprint, removing the primary, a bad key) change
// neither; a plaintext mesh has nothing to rotate.
func TestMeshKeyringOps(t *testing.T) {
	rnd := seeded(40)
	ka, _ := GenerateKeyringKey(rnd)
	kb, _ := GenerateKeyringKey(rnd)
	path := filepath.Join(t.TempDir(), "gossip.keyring")
	if err := WriteKeyring(path, [][]byte{ka}); err != nil {
		t.Fatal(err)
	}
	c := newTestCluster(t, 41, 1, func(cfg *Config) { cfg.Keyring, cfg.AllowPlaintext = [][]byte{ka}, false })
	m := c.nodes[0].mesh
	fa, fb := KeyFingerprint(ka), KeyFingerprint(kb)
	check := func(what string, want ...string) {
		t.Helper()
		if got := m.KeyFingerprints(); !slices.Equal(got, want) {
			t.Fatalf("%s: memberlist keys %v, want %v", what, got, want)
		}
		keys, err := LoadKeyring(path)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		var got []string
		for _, k := range keys {
			got = append(got, KeyFingerprint(k))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s: file keys %v, want %v", what, got, want)
		}
	}
	if err := m.InstallKey(kb, path); err != nil {
		t.Fatal(err)
	}
	check("install", fa, fb)
	if err := m.InstallKey(kb, path); err != nil {
		t.Fatal(err)
	}
	check("install again", fa, fb)
	for _, tc := range []struct {
		err  error
		want string
	}{
		{m.InstallKey(make([]byte, 20), path), "key: 20 bytes"},
		{m.UseKey("0123456789abcdef", path), "no installed key"},
		{m.RemoveKey(fa, path), "primary key"},
	} {
		if !errors.Is(tc.err, ErrKeyringRefused) || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("want %q, got %v", tc.want, tc.err)
		}
	}
	check("after refusals", fa, fb)
	if err := m.UseKey(fb, path); err != nil {
		t.Fatal(err)
	}
	check("use", fb, fa)
	if err := m.RemoveKey(fa, path); err != nil {
		t.Fatal(err)
	}
	check("remove", fb)
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
	// A write that cannot happen leaves memberlist's keyring as it was.
	if err := m.InstallKey(ka, filepath.Join(path, "not-a-dir", "k")); err == nil {
		t.Fatal("install into an unwritable path succeeded")
	}
	check("failed write", fb)

	plain := newTestCluster(t, 42, 1, nil).nodes[0].mesh
	if err := plain.InstallKey(ka, ""); !errors.Is(err, ErrNoKeyring) {
		t.Fatalf("plaintext: %v", err)
	}
}

// TestMemberStates: every member is alive; a member that stops answering is first suspect,
// then dead in the others' view; a node never seen is absent.
func TestMemberStates(t *testing.T) {
	c := newTestCluster(t, 43, 3, nil)
	m := c.nodes[0].mesh
	for _, nd := range c.nodes {
		if st := m.MemberStates()[nd.key.ID()]; st != StateAlive {
			t.Fatalf("%s: %q", nd.key.ID(), st)
		}
	}
	gone := c.nodes[2]
	gone.mesh.Close() // no leave message: failure detection must find it
	sawSuspect := false
	eventually(t, 60*time.Second, func() bool {
		st := m.MemberStates()[gone.key.ID()]
		sawSuspect = sawSuspect || st == StateSuspect
		return st == StateDead
	}, "the stopped node to be dead")
	if !sawSuspect {
		t.Fatal("the stopped node was dead without being suspect first")
	}
	if st := m.MemberStates()[c.nodes[1].key.ID()]; st != StateAlive {
		t.Fatalf("node 2: %q", st)
	}
	k, _ := identity.GenerateKey(seeded(44))
	if _, ok := m.MemberStates()[k.ID()]; ok {
		t.Fatal("a node never seen has a state")
	}
}

// TestSuspicionTracking: memberlist's line for a failed probe makes a live member suspect in
// this node's view; an answered probe, a rejoin or a death clears it; other lines change nothing.
func TestSuspicionTracking(t *testing.T) {
	k, _ := identity.GenerateKey(seeded(45))
	name := k.ID().String()
	var tr stateTracker
	for _, line := range []string{
		"[INFO] memberlist: Suspect " + name + " has failed",
		"[DEBUG] memberlist: Failed UDP ping: " + name + " (timeout reached)",
		"[INFO] memberlist: Suspect not-an-id has failed, no acks received",
	} {
		tr.noteLog(line)
	}
	if len(tr.suspect) != 0 {
		t.Fatalf("suspected from unrelated lines: %v", tr.suspect)
	}
	line := "[INFO] memberlist: Suspect " + name + " has failed, no acks received"
	for _, clear := range []func(){
		func() { tr.NotifyPingComplete(&memberlist.Node{Name: name}, time.Millisecond, nil) },
		func() { tr.NotifyJoin(&memberlist.Node{Name: name}) },
		func() { tr.NotifyLeave(&memberlist.Node{Name: name}) },
	} {
		tr.noteLog(line)
		if _, ok := tr.suspect[name]; !ok {
			t.Fatal("the failed-probe line did not make the member suspect")
		}
		clear()
		if _, ok := tr.suspect[name]; ok {
			t.Fatal("suspicion not cleared")
		}
	}
}
