package seqbench

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vigil-mesh/vigil/detector"
)

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestModelMemory prints the memory a trained model holds (heap growth while building it, after
// garbage collection), its checkpoint size, and a session's state, for each model on each data
// set. It runs with VIGIL_BENCH_SEQ=1 (make bench-detect-seq). Memory does not depend on how
// long an LSTM trains, so the LSTMs train one epoch here.
func TestModelMemory(t *testing.T) {
	if !full {
		t.Skip("skipping: set VIGIL_BENCH_SEQ=1 (make bench-detect-seq)")
	}
	dir := dataDir(t)
	hdfs, err := ReadSessions(filepath.Join(dir, "hdfs", "hdfs_train"))
	if err != nil {
		t.Fatal(err)
	}
	adfa, err := ReadADFA(filepath.Join(dir, "adfa-ld", "ADFA-LD.zip"))
	if err != nil {
		t.Fatal(err)
	}
	specs := []modelSpec{ngramSpec(3), ngramSpec(5), lstmSpec(32, 1, 1), lstmSpec(64, 2, 1), coverSpec()}
	var b strings.Builder
	b.WriteString("\n| model | data | model memory (heap) | checkpoint | session state (heap) |\n|---|---|---|---|---|\n")
	for _, data := range []struct {
		name string
		s    [][]detector.Action
	}{{"HDFS (14 keys)", hdfs}, {"ADFA-LD (150 syscalls)", adfa.Train}} {
		for _, sp := range specs {
			before := heap()
			m, err := sp.make()
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Fit(data.s); err != nil {
				t.Fatal(err)
			}
			model := heap() - before
			cp, _ := m.MarshalBinary()
			sessions := make([]detector.Session, 1000)
			before = heap()
			for i := range sessions {
				sessions[i] = m.Start()
			}
			per := (heap() - before) / uint64(len(sessions))
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %d B |\n", sp.name, data.name, kib(model), kib(uint64(len(cp))), per)
			runtime.KeepAlive(sessions)
			runtime.KeepAlive(m)
		}
	}
	t.Log(b.String())
}

func kib(n uint64) string { return fmt.Sprintf("%.1f KiB", float64(n)/1024) }
