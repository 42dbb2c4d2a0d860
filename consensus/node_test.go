package consensus

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/vigil-mesh/vigil/consensus/store"
	"github.com/vigil-mesh/vigil/consensus/transport"
	"github.com/vigil-mesh/vigil/identity"
)

func TestConfigValidate(t *testing.T) {
	tn := newTestNode(t, "n1")
	gen, _ := newGenesis(t, 1, []identity.NodeEntry{{Name: "n1", Key: tn.key.Public(), Voter: true}}, time.Now())
	c := &testCluster{t: t, gen: gen}
	good := c.config(tn, true, nil)
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	other := mustKey(t)
	cases := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"no data dir", func(c *Config) { c.DataDir = "" }, "data_dir"},
		{"no key", func(c *Config) { c.Key = identity.PrivateKey{} }, "key"},
		{"key of another host", func(c *Config) { c.Key = other }, "key"},
		{"no host", func(c *Config) { c.Host = nil }, "host"},
		{"no genesis", func(c *Config) { c.Genesis = nil }, "genesis"},
		{"bootstrap and join", func(c *Config) { c.Join = []peer.AddrInfo{tn.info()} }, "join"},
		{"lease above heartbeat", func(c *Config) { c.LeaderLeaseTimeout = 2 * c.HeartbeatTimeout }, "leader_lease_timeout"},
		{"zero commit timeout", func(c *Config) { c.CommitTimeout = 0 }, "commit_timeout"},
		{"only a log store", func(c *Config) { c.LogStore = raft.NewInmemStore() }, "log_store"},
		{"no logger", func(c *Config) { c.Logger = nil }, "logger"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.edit(&cfg)
			err := cfg.Validate()
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("got %v, want ErrInvalidConfig naming %s", err, tc.field)
			}
		})
	}
	t.Run("bootstrap node missing from genesis", func(t *testing.T) {
		cfg := good
		cfg.Genesis, _ = newGenesis(t, 1, []identity.NodeEntry{{Name: "x", Key: other.Public(), Voter: true}}, time.Now())
		if _, err := Open(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("got %v", err)
		}
		if entries, _ := os.ReadDir(cfg.DataDir); len(entries) != 0 {
			t.Fatal("refused config touched the data dir")
		}
	})
	t.Run("forged genesis", func(t *testing.T) {
		cfg := good
		cfg.Genesis = forged(gen)
		if _, err := Open(cfg); !errors.Is(err, identity.ErrBadSignature) {
			t.Fatalf("got %v", err)
		}
	})
}

// TestOpenForeignStore: a raft/ directory that is not a store fails Open with the store's error.
func TestOpenForeignStore(t *testing.T) {
	tn := newTestNode(t, "n1")
	gen, _ := newGenesis(t, 1, []identity.NodeEntry{{Name: "n1", Key: tn.key.Public(), Voter: true}}, time.Now())
	if err := prepareDataDir(tn.dir, gen.ClusterID, tn.key.ID()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tn.dir, raftDirName, "junk"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, gen: gen}
	if _, err := Open(c.config(tn, true, nil)); !errors.Is(err, store.ErrForeignDir) {
		t.Fatalf("got %v, want store.ErrForeignDir", err)
	}
}

// TestCloseLeavesNoGoroutine: after Close (and the host's), no raft, Badger or node goroutine
// is left.
func TestCloseLeavesNoGoroutine(t *testing.T) {
	c := newTestCluster(t, 2, 1)
	f := c.follower()
	mustPropose(t, f.node, registerAgent(t, c.cid, "a", time.Now(), c.ops[0]))
	for _, tn := range c.nodes {
		if err := tn.node.Close(); err != nil {
			t.Fatal(err)
		}
		if err := tn.host.Close(); err != nil {
			t.Fatal(err)
		}
	}
	markers := []string{"hashicorp/raft.", "dgraph-io/badger", "vigil/consensus.(*Node)", "vigil/consensus/transport."}
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		var left []string
		for _, g := range strings.Split(stacks, "\n\n") {
			for _, m := range markers {
				if strings.Contains(g, m) {
					left = append(left, g)
					break
				}
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left after Close, first:\n%s", len(left), left[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUnadmittedPeerRefused: a peer the registry does not hold gets nothing from any protocol:
// propose and read-index streams are reset, join answers not-admitted, raft is refused.
func TestUnadmittedPeerRefused(t *testing.T) {
	c := newTestCluster(t, 1, 1)
	l := c.nodes[0]
	stranger := newTestNode(t, "stranger")
	ctx := c.ctx()
	if err := stranger.host.Connect(ctx, l.info()); err != nil {
		t.Fatal(err)
	}
	ask := func(proto protocol.ID, req []byte) ([]byte, error) {
		s, err := stranger.host.NewStream(ctx, l.host.ID(), proto)
		if err != nil {
			return nil, err
		}
		defer s.Close()
		if _, err := s.Write(req); err != nil {
			return nil, err
		}
		_ = s.CloseWrite()
		return io.ReadAll(s)
	}
	cmd := registerAgent(t, c.cid, "sneaky", time.Now(), c.ops[0])
	for _, tc := range []struct {
		name  string
		proto protocol.ID
		req   []byte
	}{
		{"propose", ProposeProtocol, encodeProposeRequest(cmd.Encode())},
		{"read index", ReadIndexProtocol, []byte{readIndexWire}},
		{"raft", transport.RaftProtocol, []byte{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if resp, err := ask(tc.proto, tc.req); err == nil && len(resp) > 0 {
				t.Fatalf("stranger got a %d-byte answer", len(resp))
			}
		})
	}
	t.Run("join", func(t *testing.T) {
		resp, err := ask(JoinProtocol, c.cid[:])
		if err != nil {
			t.Fatal(err)
		}
		j, err := decodeJoinResponse(bytes.NewReader(resp))
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(j.Result.Err(), ErrNotAdmitted) || len(j.Nodes) != 0 {
			t.Fatalf("join answered %+v", j)
		}
	})
	if hasAgent(l.node, "sneaky") {
		t.Fatal("stranger's command applied")
	}
}

// TestJoinBeforeAdmission: a node started before its admission waits (join refused), then
// joins once the operator admits it.
func TestJoinBeforeAdmission(t *testing.T) {
	c := newTestCluster(t, 1, 1)
	n1 := c.nodes[0]
	n2 := newTestNode(t, "n2")
	c.nodes = append(c.nodes, n2)
	c.open(n2, false, []peer.AddrInfo{n1.info()})
	time.Sleep(300 * time.Millisecond) // a few refused join attempts
	if n2.node.AppliedIndex() != 0 {
		t.Fatal("unadmitted node received the log")
	}
	admit := signed(t, c.cid, &identity.AdmitNode{Node: identity.NodeEntry{Name: "n2", Key: n2.key.Public(), Voter: true}}, time.Now(), c.ops[0])
	mustPropose(t, n1.node, admit)
	c.waitConverged(n1, n2)
	mustPropose(t, n2.node, registerAgent(t, c.cid, "via-n2", time.Now(), c.ops[0]))
	c.waitConverged(n1, n2)
}
