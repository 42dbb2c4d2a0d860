package consensus

import (
	"bytes"
	"crypto/rand"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/vigil-mesh/vigil/identity"
)

// testLogger sends logs through t.Log at warn level (info with -v and VIGIL_DEBUG unset is noise).
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: testLogLevel}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func mustKey(t testing.TB) identity.PrivateKey {
	t.Helper()
	k, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signed builds a command for p issued at `at` and signs it with keys.
func signed(t testing.TB, cid identity.ClusterID, p identity.Payload, at time.Time, keys ...identity.PrivateKey) *identity.Command {
	t.Helper()
	c, err := identity.NewCommand(cid, p, at, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		c.Sign(k)
	}
	return c
}

// newGenesis returns a signed genesis with nOps operators (threshold 1) and the given nodes.
func newGenesis(t testing.TB, nOps int, nodes []identity.NodeEntry, at time.Time) (*identity.Command, []identity.PrivateKey) {
	t.Helper()
	cid, err := identity.NewClusterID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	g := &identity.Genesis{ClusterID: cid, TrustDomain: "test.vigil", Threshold: 1, Nodes: nodes}
	var ops []identity.PrivateKey
	for i := range nOps {
		k := mustKey(t)
		ops = append(ops, k)
		g.Operators = append(g.Operators, identity.OperatorEntry{Name: "op" + string(rune('1'+i)), Key: k.Public()})
	}
	return signed(t, cid, g, at, ops[0]), ops
}

func registerAgent(t testing.TB, cid identity.ClusterID, name string, at time.Time, op identity.PrivateKey) *identity.Command {
	t.Helper()
	return signed(t, cid, &identity.RegisterAgent{Name: name, Key: mustKey(t).Public(), ExpiresAt: at.Add(time.Hour)}, at, op)
}

// forged returns a copy of c with its first signature's bytes flipped.
func forged(c *identity.Command) *identity.Command {
	f := c.Clone()
	f.Signatures[0].Sig[0] ^= 0xff
	return f
}

func cmdLog(index uint64, c *identity.Command, at time.Time) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: c.Encode(), AppendedAt: at}
}

// memSink is a raft.SnapshotSink over a buffer.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { s.closed = true; return nil }

// testLogLevel is Warn; VIGIL_TEST_DEBUG=1 lowers it to Debug.
var testLogLevel = func() slog.Level {
	if os.Getenv("VIGIL_TEST_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}()
