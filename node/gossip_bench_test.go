package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/vigil-mesh/vigil/gossip"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/enforce"
)

// BenchmarkAnomalyToCutOff measures, on three real daemons (libp2p, Raft, Badger, memberlist on
// loopback, gossip profile local), the time from the first anomaly signal about an agent to the
// agent being refused by every node's gater: two nodes report it (revoke_quorum 2), a node
// proposes the automated revocation with both signals, every replica verifies them and applies
// it. It reports p50 and p99 over b.N agents.
//
//	go test ./node -run '^$' -bench AnomalyToCutOff -benchtime 20x
func BenchmarkAnomalyToCutOff(b *testing.B) {
	c := startE2EClusterYAML(b, 3, strings.Replace(gossipYAML, "profile: lan", "profile: local", 1))
	c.joinGossip()
	c.propose(c.nodes[0], &identity.SetAutomatedResponse{Enabled: true})
	ev := sha256.Sum256([]byte("bench"))
	var lat []time.Duration
	for i := range b.N {
		b.StopTimer()
		name := fmt.Sprintf("agent-%d", i)
		k := c.register(name)
		b.StartTimer()
		start := time.Now()
		if err := c.nodes[0].ReportAnomaly(name, "ngram", 0.99, ev); err != nil {
			b.Fatal(err)
		}
		if err := c.nodes[1].ReportAnomaly(name, "lstm", 0.95, ev); err != nil {
			b.Fatal(err)
		}
		for _, n := range c.nodes {
			for n.gater.Decide(k.ID().Peer()) != enforce.ReasonRevoked {
				if time.Since(start) > 20*time.Second {
					b.Fatalf("%s not revoked on %s", name, n.cfg.Node.Name)
				}
				time.Sleep(time.Millisecond)
			}
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	pct := func(q float64) float64 {
		return float64(lat[max(int(math.Ceil(q*float64(len(lat))))-1, 0)].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// BenchmarkGossipKeyring measures the admin keyring methods on three real daemons with a keyring
// (libp2p, Raft, Badger, memberlist on loopback), through node-1's admin API over mutual TLS:
// ListMembers (one node answers; the baseline), GossipKeys (node-1 asks the two others over
// /vigil/node/keyring/2), and a full rotation (install a new key, use it, remove the old one:
// three operator-signed ChangeGossipKey calls, each verified, applied and persisted on all
// three nodes).
//
//	go test ./node -run '^$' -bench GossipKeyring -benchtime 20x
func BenchmarkGossipKeyring(b *testing.B) {
	root := b.TempDir()
	key, err := gossip.GenerateKeyringKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	for i := range 3 {
		if err := gossip.WriteKeyring(filepath.Join(root, fmt.Sprintf("node-%d", i+1), "gossip.keyring"), [][]byte{key}); err != nil {
			b.Fatal(err)
		}
	}
	c := startE2EClusterYAML(keyringTB{b, root}, 3, gossipKeyringYAML)
	c.joinGossip()
	ac := c.adminClient(0, c.op)
	ctx := context.Background()
	b.Run("ListMembers", func(b *testing.B) {
		for range b.N {
			if _, err := ac.ListMembers(ctx, connect.NewRequest(&adminv1.ListMembersRequest{})); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GossipKeys", func(b *testing.B) {
		for range b.N {
			if r := listKeys(b, ac); len(r.Nodes) != 3 {
				b.Fatalf("%d nodes answered", len(r.Nodes))
			}
		}
	})
	old := key // kept across the runs of the sub-benchmark
	b.Run("Rotation", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			next, err := gossip.GenerateKeyringKey(rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			changeKey(b, ac, c.keyReq(identity.KeyringInstall, next))
			changeKey(b, ac, c.keyReq(identity.KeyringUse, []byte(gossip.KeyFingerprint(next))))
			changeKey(b, ac, c.keyReq(identity.KeyringRemove, []byte(gossip.KeyFingerprint(old))))
			old = next
		}
	})
}
