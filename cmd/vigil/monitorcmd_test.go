package main

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/agent"
	"github.com/vigil-mesh/vigil/identity"
)

func TestMonitorUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no key", []string{"monitor", "--node", "/ip4/127.0.0.1/tcp/1", "--pid", "1"}, "--key"},
		{"no node", []string{"monitor", "--key", "k", "--pid", "1"}, "--node"},
		{"neither", []string{"monitor", "--key", "k", "--node", "n"}, "give --pid PID or -- COMMAND"},
		{"both", []string{"monitor", "--key", "k", "--node", "n", "--pid", "1", "--", "true"}, "not both"},
		{"bad security", []string{"monitor", "--key", "k", "--node", "n", "--pid", "1", "--security", "plain"}, `--security "plain"`},
		{"short interval", []string{"monitor", "--key", "k", "--node", "n", "--pid", "1", "--interval", "10ms"}, "--interval 10ms"},
		{"public listen", []string{"monitor", "--key", "k", "--node", "n", "--pid", "1", "--listen", "0.0.0.0:7480"}, "not a loopback address"},
		{"stray argument", []string{"monitor", "--key", "k", "--node", "n", "python3"}, "put the agent program after --"},
		{"bad queue", []string{"monitor", "--key", "k", "--node", "n", "--pid", "1", "--queue", "0"}, "--queue 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := run(t, tc.args...)
			if code != exitUsage || !strings.Contains(out, tc.want) {
				t.Fatalf("code %d, output %q; want usage error containing %q", code, out, tc.want)
			}
		})
	}
}

// cmdBackend is a minimal connected agent for the command's plumbing test.
type cmdBackend struct {
	id     identity.ID
	mu     sync.Mutex
	events []agent.Event
	closed bool
}

func (b *cmdBackend) ID() identity.ID { return b.id }
func (b *cmdBackend) Registration() agent.Registration {
	return agent.Registration{Name: "alice", Status: "active", Node: b.id}
}
func (b *cmdBackend) Send(context.Context, string, string, []byte) (agent.Receipt, error) {
	return agent.Receipt{}, &agent.RefusedError{Code: "no_capability", Rule: "none", Hop: "sender-node", Reason: "test"}
}
func (b *cmdBackend) Handle(string, agent.Handler) {}
func (b *cmdBackend) Report(_ context.Context, evs ...agent.Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, evs...)
	return nil
}
func (b *cmdBackend) Notify() <-chan agent.ConnEvent { return nil }
func (b *cmdBackend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}

func TestMonitorRunsProgramAndExitsWithItsCode(t *testing.T) {
	k, _ := identity.GenerateKey(rand.Reader)
	b := &cmdBackend{id: k.ID()}
	var gotFlags monitorFlags
	oldConnect, oldExit := monitorConnect, monitorExit
	t.Cleanup(func() { monitorConnect, monitorExit = oldConnect, oldExit })
	monitorConnect = func(_ context.Context, f monitorFlags, _ *slog.Logger) (monitorBackend, error) {
		gotFlags = f
		return b, nil
	}
	exitCodeSeen := -1
	monitorExit = func(c int) { exitCodeSeen = c }
	dir, err := os.MkdirTemp("", "vmc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "m.sock")
	out, code := run(t, "monitor", "--key", filepath.Join(dir, "a.key"), "--node", "/ip4/127.0.0.1/tcp/1/p2p/x",
		"--node", "/ip4/127.0.0.1/tcp/2/p2p/y", "--security", "noise", "--listen", "unix:"+sock, "--interval", "100ms",
		"--", "sh", "-c", `echo "url=$VIGIL_MONITOR_URL"; exit 7`)
	if code != exitOK || exitCodeSeen != 7 {
		t.Fatalf("code %d, exit %d; output:\n%s", code, exitCodeSeen, out)
	}
	if !strings.Contains(out, "url=unix://"+sock) {
		t.Fatalf("the program did not get VIGIL_MONITOR_URL:\n%s", out)
	}
	if len(gotFlags.nodes) != 2 || gotFlags.security != "noise" {
		t.Fatalf("flags passed to connect: %+v", gotFlags)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		t.Fatal("the client was not closed")
	}
	var exitEv bool
	for _, e := range b.events {
		exitEv = exitEv || (e.Name == "process_exit" && e.Value == 7)
	}
	if !exitEv {
		t.Fatalf("no process_exit event with value 7 in %+v", b.events)
	}
}

// TestMonitorConnectFailureIsNil: a dial that ends without a session returns a nil backend, not
// a nil *agent.Client inside a non-nil interface (which a Ctrl-C during the dial used to Close).
func TestMonitorConnectFailureIsNil(t *testing.T) {
	k, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	f := monitorFlags{key: filepath.Join(t.TempDir(), "agent.key"), security: "tls",
		nodes: []string{"/ip4/127.0.0.1/tcp/1/p2p/" + k.ID().String()}}
	b, err := monitorConnect(ctx, f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		t.Fatal("connected to a node that does not exist")
	}
	if b != nil {
		t.Fatalf("failed connect returned a non-nil backend %#v", b)
	}
}
