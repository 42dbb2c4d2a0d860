package consensus

import (
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/identity"
)

// dirState fingerprints every file and directory under dir (path, mode, size, mtime, content).
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		v := info.Mode().String() + " " + info.ModTime().String()
		if !d.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			v += " " + string(sum[:])
		}
		out[p] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOpenDataDir: a data dir is bound to its cluster and node key; another genesis or another
// key is refused with a message naming the dir and both values, and the dir is left untouched.
// A restart with the right genesis and key recovers the state.
func TestOpenDataDir(t *testing.T) {
	c := newTestCluster(t, 1, 1)
	n1 := c.nodes[0]
	mustPropose(t, n1.node, registerAgent(t, c.cid, "persisted", time.Now(), c.ops[0]))
	want := n1.node.fsm.hash()
	if err := n1.node.Close(); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{raftDirName, snapshotsDirName, stateDirName, keysDirName} {
		if info, err := os.Stat(filepath.Join(n1.dir, sub)); err != nil || info.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v %v", sub, info, err)
		}
	}
	before := dirState(t, n1.dir)

	otherGen, _ := newGenesis(t, 1, []identity.NodeEntry{{Name: "n1", Key: n1.key.Public(), Voter: true}}, time.Now())
	otherKey := newTestNode(t, "other")
	cases := []struct {
		name  string
		cfg   func() Config
		parts []string
	}{
		{"another cluster", func() Config {
			cfg := c.config(n1, true, nil)
			cfg.Genesis = otherGen
			return cfg
		}, []string{n1.dir, c.cid.String(), otherGen.ClusterID.String()}},
		{"another node key", func() Config {
			cfg := c.config(otherKey, false, nil)
			cfg.DataDir = n1.dir
			return cfg
		}, []string{n1.dir, n1.key.ID().String(), otherKey.key.ID().String()}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := Open(tc.cfg())
			if err == nil {
				n.Close()
				t.Fatal("foreign data dir opened")
			}
			if !errors.Is(err, ErrDataDir) {
				t.Fatalf("got %v, want ErrDataDir", err)
			}
			for _, p := range tc.parts {
				if !strings.Contains(err.Error(), p) {
					t.Fatalf("error %q does not name %q", err, p)
				}
			}
			after := dirState(t, n1.dir)
			if len(after) != len(before) {
				t.Fatalf("data dir changed: %d entries, was %d", len(after), len(before))
			}
			for p, v := range before {
				if after[p] != v {
					t.Fatalf("data dir changed at %s", p)
				}
			}
		})
	}

	t.Run("restart recovers the state", func(t *testing.T) {
		c.open(n1, true, nil)
		c.waitFor("replay", func() bool { return n1.node.fsm.hash() == want })
		if !hasAgent(n1.node, "persisted") {
			t.Fatal("agent lost across restart")
		}
		if err := n1.node.WaitForLeader(c.ctx()); err != nil {
			t.Fatal(err)
		}
		mustPropose(t, n1.node, registerAgent(t, c.cid, "after-restart", time.Now(), c.ops[0]))
	})
}

func TestPrepareDataDirDamaged(t *testing.T) {
	cid := identity.ClusterID{1}
	id := mustKey(t).ID()
	cases := []struct {
		name  string
		setup func(dir string)
	}{
		{"cluster-id without node-id", func(dir string) {
			_ = os.WriteFile(filepath.Join(dir, clusterIDFile), []byte(cid.String()), 0o600)
		}},
		{"oversized cluster-id", func(dir string) {
			_ = os.WriteFile(filepath.Join(dir, clusterIDFile), make([]byte, maxIDFileSize+1), 0o600)
			_ = os.WriteFile(filepath.Join(dir, nodeIDFile), []byte(id.String()), 0o600)
		}},
		{"raft state without identity files", func(dir string) {
			_ = os.MkdirAll(filepath.Join(dir, raftDirName), 0o700)
			_ = os.WriteFile(filepath.Join(dir, raftDirName, "MANIFEST"), []byte("x"), 0o600)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(dir)
			if err := prepareDataDir(dir, cid, id); !errors.Is(err, ErrDataDir) {
				t.Fatalf("got %v, want ErrDataDir", err)
			}
		})
	}
	dir := t.TempDir()
	if err := prepareDataDir(dir, cid, id); err != nil {
		t.Fatal(err)
	}
	if err := prepareDataDir(dir, cid, id); err != nil {
		t.Fatalf("second open of the same dir: %v", err)
	}
}

// TestOpenLostRaftState: a data dir that once held raft state but lost raft/ must not start again,
// neither as the bootstrap node (it would found a second cluster with the same id) nor as a
// follower (it could vote twice in one term). A joining node that never received raft state may
// restart freely.
func TestOpenLostRaftState(t *testing.T) {
	c := newTestCluster(t, 1, 1)
	n1 := c.nodes[0]
	if err := n1.node.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(n1.dir, raftDirName)); err != nil {
		t.Fatal(err)
	}
	for _, bootstrap := range []bool{true, false} {
		n, err := Open(c.config(n1, bootstrap, nil))
		if err == nil {
			n.Close()
			t.Fatalf("bootstrap=%v: a member that lost its raft state opened", bootstrap)
		}
		if !errors.Is(err, ErrDataDir) || !strings.Contains(err.Error(), n1.dir) || !strings.Contains(err.Error(), "raft state") {
			t.Fatalf("bootstrap=%v: got %v, want ErrDataDir naming the dir and the lost raft state", bootstrap, err)
		}
		if entries, _ := os.ReadDir(filepath.Join(n1.dir, raftDirName)); len(entries) > 0 {
			t.Fatalf("bootstrap=%v: a refused start created a store in %s/ (%d files)", bootstrap, raftDirName, len(entries))
		}
	}

	joiner := newTestNode(t, "joiner")
	for range 2 { // never admitted: no raft state to lose, so a restart is fine
		n, err := Open(c.config(joiner, false, nil))
		if err != nil {
			t.Fatalf("a joining node without raft state could not restart: %v", err)
		}
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
