package monitor

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/agent"
)

// pythonAgent returns the python3 interpreter and the path of examples/python/agent.py, or skips.
func pythonAgent(t *testing.T) (string, string) {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed: the Python example is not tested")
	}
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
	return py, filepath.Join(dir, "examples", "python", "agent.py")
}

// TestPythonAgent runs examples/python/agent.py under the sidecar, over a unix socket and over
// loopback TCP: it prints its registration, sends to bob, receives two messages from bob, reports
// a tool_call event for each and exits 0.
func TestPythonAgent(t *testing.T) {
	py, script := pythonAgent(t)
	for _, listen := range []string{"", "127.0.0.1:0"} {
		name := "unix"
		if listen != "" {
			name = "tcp"
		}
		t.Run(name, func(t *testing.T) {
			mesh := newTestMesh(t)
			alice := mesh.add(t, "alice", "send:bob")
			bob := mesh.add(t, "bob", "send:alice")
			got := make(chan agent.Message, 4)
			bob.Handle("chat", func(_ context.Context, m agent.Message) error { got <- m; return nil })
			out := newSyncBuf()
			cfg := RunConfig{Command: []string{py, script, "--peer", "bob", "--capability", "chat", "--message", "hi bob",
				"--max-messages", "2", "--wait", "5"}, Stdout: out, Stderr: out}
			if listen != "" {
				cfg.API = DefaultConfig()
				cfg.API.Listen = listen
			}
			done := runSidecar(t, t.Context(), alice, cfg)
			select {
			case m := <-got:
				if m.From != "alice" || string(m.Body) != "hi bob" || m.Capability != "chat" {
					t.Fatalf("bob got %+v", m)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("bob got nothing; agent output:\n%s", out.String())
			}
			out.waitFor(t, "sent: to=bob id=", 10*time.Second)
			for _, body := range []string{"first", "second"} {
				if _, err := bob.Send(t.Context(), "alice", "chat", []byte(body)); err != nil {
					t.Fatal(err)
				}
			}
			r := waitRun(t, done, 30*time.Second)
			if r.err != nil || r.code != 0 {
				t.Fatalf("Run = %d, %v; output:\n%s", r.code, r.err, out.String())
			}
			text := out.String()
			for _, want := range []string{
				"registration: name=alice id=" + alice.ID().String() + " status=active capabilities=send:bob",
				"received: from=bob capability=chat body=first",
				"received: from=bob capability=chat body=second",
			} {
				if !strings.Contains(text, want) {
					t.Fatalf("output lacks %q:\n%s", want, text)
				}
			}
			var calls int
			for _, e := range alice.snapshot() {
				if e.Kind == "tool_call" && e.Name == "handle_message" && e.Attrs["from"] == "bob" && e.Attrs["capability"] == "chat" {
					calls++
				}
			}
			if calls != 2 {
				t.Fatalf("%d tool_call events, want 2", calls)
			}
		})
	}
}

// TestPythonAgentRefusalAndSIGTERM: a send the node refuses is printed with its code, and SIGTERM
// forwarded by the sidecar ends the agent cleanly (exit 0) in the middle of a long poll.
func TestPythonAgentRefusalAndSIGTERM(t *testing.T) {
	py, script := pythonAgent(t)
	mesh := newTestMesh(t)
	alice := mesh.add(t, "alice")
	out := newSyncBuf()
	sigs := make(chan os.Signal, 1)
	done := runSidecar(t, t.Context(), alice, RunConfig{Command: []string{py, script, "--peer", "carol", "--wait", "30"},
		Stdout: out, Stderr: out, Signals: sigs})
	out.waitFor(t, "refused: code=no_capability hop=sender-node rule=capability send:carol not held by alice", 30*time.Second)
	time.Sleep(200 * time.Millisecond) // let it enter the long poll
	sigs <- syscall.SIGTERM
	r := waitRun(t, done, 30*time.Second)
	if r.err != nil || r.code != 0 {
		t.Fatalf("Run = %d, %v; want 0; output:\n%s", r.code, r.err, out.String())
	}
	if !strings.Contains(out.String(), "stopping on SIGTERM") {
		t.Fatalf("output:\n%s", out.String())
	}
}

// TestPythonAgentCutOff: when the node cuts the agent off, the agent sees it on /v1/status after
// an empty poll and exits 3.
func TestPythonAgentCutOff(t *testing.T) {
	py, script := pythonAgent(t)
	mesh := newTestMesh(t)
	alice := mesh.add(t, "alice")
	out := newSyncBuf()
	done := runSidecar(t, t.Context(), alice, RunConfig{Command: []string{py, script, "--wait", "1"}, Stdout: out, Stderr: out})
	out.waitFor(t, "registration: name=alice", 30*time.Second)
	alice.cut("revoked by operator op-1")
	r := waitRun(t, done, 30*time.Second)
	if r.code != 3 || !strings.Contains(out.String(), "cut off: revoked by operator op-1") {
		t.Fatalf("Run = %d, %v; want 3; output:\n%s", r.code, r.err, out.String())
	}
}
