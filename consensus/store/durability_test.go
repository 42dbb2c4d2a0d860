package store

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// childDirEnv, when set, makes TestDurabilityChild the writer process of
// TestDurabilityAfterSIGKILL instead of a skipped test.
const childDirEnv = "VIGIL_STORE_DURABILITY_CHILD_DIR"

// TestDurabilityChild appends batches forever, printing "ack <last index>" after
// each StoreLogs and SetUint64 returns, until its parent kills it.
func TestDurabilityChild(t *testing.T) {
	dir := os.Getenv(childDirEnv)
	if dir == "" {
		t.Skip("only runs as the child of TestDurabilityAfterSIGKILL")
	}
	s, err := Open(dir, Options{Logger: testLogger(t)})
	if err != nil {
		fmt.Println("open error:", err)
		os.Exit(2)
	}
	for next := uint64(1); ; next += 8 {
		if err := s.StoreLogs(mkLogs(next, next+7)); err != nil {
			fmt.Println("store error:", err)
			os.Exit(2)
		}
		if err := s.SetUint64([]byte("CurrentTerm"), next+7); err != nil {
			fmt.Println("set error:", err)
			os.Exit(2)
		}
		// Unbuffered: the parent sees the ack only after both writes returned.
		fmt.Fprintf(os.Stdout, "ack %d\n", next+7)
	}
}

// TestDurabilityAfterSIGKILL kills a writer process with SIGKILL at an
// arbitrary moment after it acknowledged entries, reopens the store and checks
// that every acknowledged entry and the last acknowledged stable value are there.
// (SIGKILL loses the process, not the page cache: power loss is covered by
// SyncWrites, which this test cannot observe.)
func TestDurabilityAfterSIGKILL(t *testing.T) {
	if os.Getenv(childDirEnv) != "" {
		t.Skip("child process")
	}
	dir := t.TempDir()
	for round, minAcks := range []int{50, 120} { // the second round appends to a reopened store
		cmd := exec.Command(os.Args[0], "-test.run=^TestDurabilityChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), childDirEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// A hung child is killed, which ends the scan below.
		watchdog := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
		var acked uint64
		acks := 0
		sc := bufio.NewScanner(out)
		for acks < minAcks && sc.Scan() {
			line := sc.Text()
			v, ok := strings.CutPrefix(line, "ack ")
			if !ok {
				continue // test framework output
			}
			if acked, err = strconv.ParseUint(v, 10, 64); err != nil {
				t.Fatalf("bad ack line %q", line)
			}
			acks++
		}
		watchdog.Stop()
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Drain: acks printed between our last read and the kill count too.
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
				if n, err := strconv.ParseUint(v, 10, 64); err == nil {
					acked = n
				}
			}
		}
		_ = cmd.Wait()
		if acks < minAcks {
			t.Fatalf("round %d: child acknowledged only %d batches", round, acks)
		}

		s, err := Open(dir, Options{Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		first, _ := s.FirstIndex()
		last, _ := s.LastIndex()
		if first != 1 || last < acked {
			t.Fatalf("round %d: bounds %d..%d; acknowledged up to %d", round, first, last, acked)
		}
		for i := uint64(1); i <= acked; i++ {
			var l raft.Log
			if err := s.GetLog(i, &l); err != nil || !sameLog(&l, mkLog(i)) {
				t.Fatalf("round %d: acknowledged entry %d: %+v, %v", round, i, l, err)
			}
		}
		if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v < acked {
			t.Fatalf("round %d: CurrentTerm = %d, %v; acknowledged %d", round, v, err, acked)
		}
		t.Logf("round %d: %d acknowledged entries survived SIGKILL (log holds %d)", round, acked, last)
		// The next round's child restarts at index 1 and overwrites: reset by
		// deleting everything, as raft would after installing a snapshot.
		if err := s.DeleteRange(first, last); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
