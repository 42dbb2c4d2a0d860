package benchmark

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// childEnv makes the test binary act as a benchmark process that dies without calling Close.
const childEnv = "VIGIL_BENCH_ORPHAN_CHILD_DIR"

// TestNoOrphanWhenProcessDies runs a child test process that starts etcd and exits abruptly; the
// parent-death signal must kill the member anyway.
func TestNoOrphanWhenProcessDies(t *testing.T) {
	if dir := os.Getenv(childEnv); dir != "" {
		cfg := DefaultEtcdConfig(dir)
		cfg.Members = 1
		c, err := StartEtcdWith(cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		pids := make([]string, len(c.members))
		for i, m := range c.members {
			pids[i] = strconv.Itoa(m.cmd.Process.Pid)
		}
		if err := os.WriteFile(filepath.Join(dir, "pids"), []byte(strings.Join(pids, " ")), 0o600); err != nil {
			os.Exit(2)
		}
		os.Exit(3) // dies like a crashed or timed-out benchmark: no Close, no cleanup
	}
	if _, err := exec.LookPath("etcd"); err != nil {
		t.Skip("etcd not installed (scripts/install-etcd.sh)")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestNoOrphanWhenProcessDies$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("child: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "pids"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(raw)) {
		pid, _ := strconv.Atoi(f)
		deadline := time.Now().Add(5 * time.Second)
		for alive(pid) {
			if time.Now().After(deadline) {
				_ = exec.Command("kill", "-9", f).Run() // do not leak it from the test either
				t.Fatalf("etcd pid %d outlived its parent", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// alive reports whether pid runs; a zombie (killed, not yet reaped by init) counts as dead.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
