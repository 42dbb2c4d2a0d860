package store

import (
	"runtime"
	"testing"

	"github.com/hashicorp/raft"
	raftbench "github.com/hashicorp/raft/bench"
)

// The hashicorp/raft bench harness, run on the Store as raft-boltdb does.

func benchStore(b *testing.B, opts Options) *Store {
	b.Helper()
	opts.Logger = testLogger(b)
	s, err := Open(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func BenchmarkFirstIndex(b *testing.B)  { raftbench.FirstIndex(b, benchStore(b, Options{})) }
func BenchmarkLastIndex(b *testing.B)   { raftbench.LastIndex(b, benchStore(b, Options{})) }
func BenchmarkGetLog(b *testing.B)      { raftbench.GetLog(b, benchStore(b, Options{})) }
func BenchmarkStoreLog(b *testing.B)    { raftbench.StoreLog(b, benchStore(b, Options{})) }
func BenchmarkStoreLogs(b *testing.B)   { raftbench.StoreLogs(b, benchStore(b, Options{})) }
func BenchmarkDeleteRange(b *testing.B) { raftbench.DeleteRange(b, benchStore(b, Options{})) }
func BenchmarkSet(b *testing.B)         { raftbench.Set(b, benchStore(b, Options{})) }
func BenchmarkGet(b *testing.B)         { raftbench.Get(b, benchStore(b, Options{})) }
func BenchmarkSetUint64(b *testing.B)   { raftbench.SetUint64(b, benchStore(b, Options{})) }
func BenchmarkGetUint64(b *testing.B)   { raftbench.GetUint64(b, benchStore(b, Options{})) }

var profiles = []struct {
	name string
	opts Options
}{
	{"edge", DefaultOptions()},
	{"badger-defaults", badgerDefaultSizes()},
}

// BenchmarkProfileStoreLogs compares the edge profile with Badger's own sizes on
// raft's hot path: a batch of 64 entries of 256 bytes (MaxAppendEntries), then
// reading one back. Reports entries/s and the Go heap in use after the run.
func BenchmarkProfileStoreLogs(b *testing.B) {
	for _, p := range profiles {
		b.Run(p.name, func(b *testing.B) {
			s := benchStore(b, p.opts)
			const batch = 64
			logs := make([]*raft.Log, batch)
			for i := range logs {
				logs[i] = &raft.Log{Data: make([]byte, 256)}
			}
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				for i, l := range logs {
					l.Index = uint64(n*batch + i + 1)
				}
				if err := s.StoreLogs(logs); err != nil {
					b.Fatal(err)
				}
				var got raft.Log
				if err := s.GetLog(uint64(n*batch+1), &got); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
			reportHeap(b)
		})
	}
}

// BenchmarkProfileOpen measures Open+Close and the heap an open, empty store
// holds under each profile (memtable arenas and caches are allocated up front).
func BenchmarkProfileOpen(b *testing.B) {
	for _, p := range profiles {
		b.Run(p.name, func(b *testing.B) {
			dir := b.TempDir()
			for n := 0; n < b.N; n++ {
				s, err := Open(dir, Options{Logger: testLogger(b), MemTableSize: p.opts.MemTableSize,
					NumMemtables: p.opts.NumMemtables, BlockCacheSize: p.opts.BlockCacheSize,
					ValueLogFileSize: p.opts.ValueLogFileSize, ValueThreshold: p.opts.ValueThreshold,
					NumCompactors: p.opts.NumCompactors})
				if err != nil {
					b.Fatal(err)
				}
				if n == b.N-1 {
					b.StopTimer()
					reportHeap(b)
					b.StartTimer()
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func reportHeap(b *testing.B) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heapMiB")
	b.ReportMetric(float64(ms.Sys)/(1<<20), "sysMiB")
}
