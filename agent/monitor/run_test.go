package monitor

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"log/slog"

	"github.com/vigil-mesh/vigil/agent"
)

// syncBuf collects a process's output and lets a test wait for a line.
type syncBuf struct {
	mu   sync.Mutex
	b    strings.Builder
	more chan struct{}
}

func newSyncBuf() *syncBuf { return &syncBuf{more: make(chan struct{})} }

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Write(p)
	close(s.more)
	s.more = make(chan struct{})
	return len(p), nil
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuf) waitFor(t testing.TB, sub string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		s.mu.Lock()
		got, ch := s.b.String(), s.more
		s.mu.Unlock()
		if strings.Contains(got, sub) {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %q in output:\n%s", sub, got)
		}
	}
}

type runResult struct {
	code int
	err  error
}

// runSidecar runs the whole sidecar (Run) over b in the background: the API on a unix socket in a
// temporary directory unless cfg.API.Listen is set, 100ms samples unless cfg.Interval is set.
func runSidecar(t testing.TB, ctx context.Context, b Backend, cfg RunConfig) <-chan runResult {
	t.Helper()
	if cfg.API.Listen == "" {
		api := DefaultConfig()
		api.Listen = "unix:" + filepath.Join(shortTempDir(t), "m.sock")
		cfg.API = api
	}
	if cfg.Interval == 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	if cfg.Stop == 0 {
		cfg.Stop = 5 * time.Second
	}
	done := make(chan runResult, 1)
	go func() {
		code, err := Run(ctx, b, cfg)
		done <- runResult{code, err}
	}()
	return done
}

func waitRun(t testing.TB, done <-chan runResult, d time.Duration) runResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(d):
		t.Fatal("Run did not return in time")
	}
	return runResult{}
}

func hasEvent(name string) func([]agent.Event) bool {
	return func(evs []agent.Event) bool {
		for _, e := range evs {
			if e.Name == name {
				return true
			}
		}
		return false
	}
}

func TestRunCommandExitCodeAndEnv(t *testing.T) {
	mesh := newTestMesh(t)
	a := mesh.add(t, "alice")
	out := newSyncBuf()
	done := runSidecar(t, t.Context(), a, RunConfig{
		Command: []string{"sh", "-c", `echo "url=$VIGIL_MONITOR_URL"; exit 3`}, Stdout: out})
	r := waitRun(t, done, 20*time.Second)
	if r.err != nil || r.code != 3 {
		t.Fatalf("Run = %d, %v; want 3", r.code, r.err)
	}
	if !strings.Contains(out.String(), "url=unix:///") {
		t.Fatalf("the program did not get VIGIL_MONITOR_URL: %q", out.String())
	}
	evs := a.waitEvents(t, 5*time.Second, "process_exit", hasEvent("process_exit"))
	for _, e := range evs {
		if e.Name == "process_exit" && (e.Kind != "custom" || e.Value != 3) {
			t.Fatalf("process_exit event %+v, want custom with value 3", e)
		}
	}
}

func TestRunForwardsSignals(t *testing.T) {
	mesh := newTestMesh(t)
	a := mesh.add(t, "alice")
	sigs := make(chan os.Signal, 1)
	done := runSidecar(t, t.Context(), a, RunConfig{Command: []string{"sleep", "30"}, Signals: sigs})
	a.waitEvents(t, 20*time.Second, "a first sample", hasEvent("memory_bytes"))
	sigs <- syscall.SIGTERM
	r := waitRun(t, done, 20*time.Second)
	if r.err != nil || r.code != 128+int(syscall.SIGTERM) {
		t.Fatalf("Run = %d, %v; want %d", r.code, r.err, 128+int(syscall.SIGTERM))
	}
}

func TestRunStopsProgramWhenContextEnds(t *testing.T) {
	mesh := newTestMesh(t)
	a := mesh.add(t, "alice")
	ctx, cancel := context.WithCancel(t.Context())
	done := runSidecar(t, ctx, a, RunConfig{Command: []string{"sleep", "30"}})
	a.waitEvents(t, 20*time.Second, "a first sample", hasEvent("memory_bytes"))
	cancel()
	if r := waitRun(t, done, 20*time.Second); r.code != 128+int(syscall.SIGTERM) {
		t.Fatalf("Run = %d, %v; want the program ended by SIGTERM", r.code, r.err)
	}
}

func TestRunWatchesPID(t *testing.T) {
	mesh := newTestMesh(t)
	a := mesh.add(t, "alice")
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	done := runSidecar(t, t.Context(), a, RunConfig{PID: cmd.Process.Pid})
	a.waitEvents(t, 20*time.Second, "cpu_usage", hasEvent("cpu_usage"))
	cmd.Process.Kill()
	cmd.Wait()
	r := waitRun(t, done, 20*time.Second)
	if r.err != nil || r.code != 0 {
		t.Fatalf("Run = %d, %v; want 0 when the watched process exits", r.code, r.err)
	}
	a.waitEvents(t, 5*time.Second, "process_exit", hasEvent("process_exit"))
}

func TestRunConfigValidate(t *testing.T) {
	api := DefaultConfig()
	for _, tc := range []struct {
		cfg  RunConfig
		want string
	}{
		{RunConfig{API: api, Interval: time.Second}, "exactly one of --pid"},
		{RunConfig{API: api, Interval: time.Second, PID: 1, Command: []string{"x"}}, "exactly one of --pid"},
		{RunConfig{API: api, Interval: time.Second, PID: -4}, "--pid -4"},
		{RunConfig{API: api, Interval: 10 * time.Millisecond, PID: 1}, "--interval 10ms"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate = %v, want %q", err, tc.want)
		}
	}
	mesh := newTestMesh(t)
	api.Listen = "unix:" + filepath.Join(shortTempDir(t), "m.sock")
	code, err := Run(t.Context(), mesh.add(t, "a"), RunConfig{API: api, Interval: time.Second, Command: []string{"/nonexistent/agent"}})
	if code != 127 || err == nil || !strings.Contains(err.Error(), "/nonexistent/agent") {
		t.Fatalf("missing program: %d, %v", code, err)
	}
}

func TestRunPIDMustExist(t *testing.T) {
	mesh := newTestMesh(t)
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	done := runSidecar(t, t.Context(), mesh.add(t, "a"), RunConfig{PID: cmd.Process.Pid}) // reaped: gone
	r := waitRun(t, done, 10*time.Second)
	if r.code != 1 || r.err == nil || !strings.Contains(r.err.Error(), "no such running process") {
		t.Fatalf("Run = %d, %v; want an error naming the missing process", r.code, r.err)
	}
}
