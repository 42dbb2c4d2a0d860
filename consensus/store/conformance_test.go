package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// logAndStable is what raft needs from one store.
type logAndStable interface {
	raft.LogStore
	raft.StableStore
}

// impl is one implementation under the conformance suite. reopen, when not
// nil, closes the store and opens it again from disk.
type impl struct {
	name   string
	open   func(t *testing.T) logAndStable
	reopen func(t *testing.T, s logAndStable) logAndStable
	// strict: a missing stable key must be exactly ErrKeyNotFound (InmemStore
	// returns 0, nil for a missing uint64, which raft also accepts), and
	// DeleteRange must keep exact bounds for any range. InmemStore only tracks
	// bounds for the ranges raft deletes (a prefix or a suffix inside the log):
	// after deleting everything it reports FirstIndex = max+1.
	strict bool
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func openTestStore(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func impls() []impl {
	return []impl{
		{
			name: "inmem",
			open: func(t *testing.T) logAndStable { return raft.NewInmemStore() },
		},
		{
			name: "badger",
			open: func(t *testing.T) logAndStable { return openTestStore(t, t.TempDir()) },
			reopen: func(t *testing.T, s logAndStable) logAndStable {
				st := s.(*Store)
				if err := st.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				return openTestStore(t, st.dir)
			},
			strict: true,
		},
	}
}

func mkLog(i uint64) *raft.Log {
	return &raft.Log{
		Index:      i,
		Term:       i/10 + 1,
		Type:       raft.LogType(i % 6),
		Data:       []byte(fmt.Sprintf("data-%d", i)),
		Extensions: []byte(fmt.Sprintf("ext-%d", i)),
		AppendedAt: time.Unix(1_700_000_000+int64(i), int64(i)*1000),
	}
}

func mkLogs(from, to uint64) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, mkLog(i))
	}
	return out
}

func sameLog(a, b *raft.Log) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type &&
		bytes.Equal(a.Data, b.Data) && bytes.Equal(a.Extensions, b.Extensions) &&
		a.AppendedAt.Equal(b.AppendedAt)
}

func wantBounds(t *testing.T, s raft.LogStore, first, last uint64) {
	t.Helper()
	f, err := s.FirstIndex()
	if err != nil || f != first {
		t.Fatalf("FirstIndex = %d, %v; want %d", f, err, first)
	}
	l, err := s.LastIndex()
	if err != nil || l != last {
		t.Fatalf("LastIndex = %d, %v; want %d", l, err, last)
	}
}

// wantLogs checks that exactly the indexes in present (within [lo,hi]) exist
// and hold mkLog's content.
func wantLogs(t *testing.T, s raft.LogStore, lo, hi uint64, present func(uint64) bool) {
	t.Helper()
	for i := lo; i <= hi; i++ {
		var got raft.Log
		err := s.GetLog(i, &got)
		if !present(i) {
			if err != raft.ErrLogNotFound {
				t.Fatalf("GetLog(%d) = %v; want raft.ErrLogNotFound", i, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("GetLog(%d): %v", i, err)
		}
		if want := mkLog(i); !sameLog(&got, want) {
			t.Fatalf("GetLog(%d) = %+v; want %+v", i, got, *want)
		}
	}
}

func TestConformance(t *testing.T) {
	type tcase struct {
		name       string
		run        func(t *testing.T, im impl, s logAndStable)
		strictOnly bool // see impl.strict
	}
	all := func(uint64) bool { return true }
	cases := []tcase{
		{"empty store indexes", func(t *testing.T, im impl, s logAndStable) {
			wantBounds(t, s, 0, 0)
			wantLogs(t, s, 0, 3, func(uint64) bool { return false })
		}, false},
		{"store and get single logs", func(t *testing.T, im impl, s logAndStable) {
			for i := uint64(1); i <= 5; i++ {
				if err := s.StoreLog(mkLog(i)); err != nil {
					t.Fatal(err)
				}
			}
			wantBounds(t, s, 1, 5)
			wantLogs(t, s, 1, 5, all)
			wantLogs(t, s, 6, 7, func(uint64) bool { return false })
		}, false},
		{"batches with a gap", func(t *testing.T, im impl, s logAndStable) {
			if err := s.StoreLogs(mkLogs(10, 40)); err != nil {
				t.Fatal(err)
			}
			if err := s.StoreLogs(mkLogs(100, 164)); err != nil {
				t.Fatal(err)
			}
			wantBounds(t, s, 10, 164)
			wantLogs(t, s, 9, 165, func(i uint64) bool { return (i >= 10 && i <= 40) || (i >= 100 && i <= 164) })
		}, false},
		{"empty batch is a no-op", func(t *testing.T, im impl, s logAndStable) {
			if err := s.StoreLogs(nil); err != nil {
				t.Fatal(err)
			}
			wantBounds(t, s, 0, 0)
		}, false},
		{"overwrite an entry", func(t *testing.T, im impl, s logAndStable) {
			if err := s.StoreLogs(mkLogs(1, 3)); err != nil {
				t.Fatal(err)
			}
			l := mkLog(2)
			l.Term, l.Data = 99, []byte("replaced")
			if err := s.StoreLog(l); err != nil {
				t.Fatal(err)
			}
			var got raft.Log
			if err := s.GetLog(2, &got); err != nil || got.Term != 99 || string(got.Data) != "replaced" {
				t.Fatalf("GetLog(2) = %+v, %v", got, err)
			}
			wantBounds(t, s, 1, 3)
		}, false},
		{"zero-value fields", func(t *testing.T, im impl, s logAndStable) {
			if err := s.StoreLog(&raft.Log{Index: 7}); err != nil {
				t.Fatal(err)
			}
			var got raft.Log
			if err := s.GetLog(7, &got); err != nil {
				t.Fatal(err)
			}
			if got.Index != 7 || got.Term != 0 || len(got.Data) != 0 || len(got.Extensions) != 0 || !got.AppendedAt.IsZero() {
				t.Fatalf("GetLog(7) = %+v", got)
			}
		}, false},
		{"delete prefix (compaction)", func(t *testing.T, im impl, s logAndStable) {
			if err := s.StoreLogs(mkLogs(1, 50)); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteRange(1, 20); err != nil {
				t.Fatal(err)
			}
			wantBounds(t, s, 21, 50)
			wantLogs(t, s, 1, 51, func(i uint64) bool { return i >= 21 && i <= 50 })
		}, false},
		{"delete suffix (conflict)", func(t *testing.T, im impl, s logAndStable) {
			if err := s.StoreLogs(mkLogs(1, 50)); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteRange(31, 50); err != nil {
				t.Fatal(err)
			}
			wantBounds(t, s, 1, 30)
			wantLogs(t, s, 1, 51, func(i uint64) bool { return i <= 30 })
			if err := s.StoreLogs(mkLogs(31, 35)); err != nil {
				t.Fatal(err)
			}
			wantBounds(t, s, 1, 35)
		}, false},
		{"delete everything", func(t *testing.T, im impl, s logAndStable) {
			if err := s.StoreLogs(mkLogs(5, 15)); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteRange(0, 1000); err != nil {
				t.Fatal(err)
			}
			wantBounds(t, s, 0, 0)
			if err := s.StoreLogs(mkLogs(500, 501)); err != nil {
				t.Fatal(err)
			}
			wantBounds(t, s, 500, 501)
		}, true},
		{"delete range beyond the log", func(t *testing.T, im impl, s logAndStable) {
			if err := s.StoreLogs(mkLogs(1, 10)); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteRange(20, 30); err != nil {
				t.Fatal(err)
			}
			wantBounds(t, s, 1, 10)
			wantLogs(t, s, 1, 10, all)
		}, true},
		{"stable set and get", func(t *testing.T, im impl, s logAndStable) {
			for _, kv := range []struct{ k, v string }{{"CurrentTerm", "x"}, {"LastVoteCand", "node-1"}, {"k", string(bytes.Repeat([]byte{0xff}, 4096))}} {
				if err := s.Set([]byte(kv.k), []byte(kv.v)); err != nil {
					t.Fatal(err)
				}
				got, err := s.Get([]byte(kv.k))
				if err != nil || string(got) != kv.v {
					t.Fatalf("Get(%q) = %q, %v", kv.k, got, err)
				}
			}
			if err := s.Set([]byte("k"), []byte("v2")); err != nil {
				t.Fatal(err)
			}
			if got, err := s.Get([]byte("k")); err != nil || string(got) != "v2" {
				t.Fatalf("Get after overwrite = %q, %v", got, err)
			}
		}, false},
		{"stable uint64", func(t *testing.T, im impl, s logAndStable) {
			for _, v := range []uint64{0, 1, 1 << 40, ^uint64(0)} {
				if err := s.SetUint64([]byte("CurrentTerm"), v); err != nil {
					t.Fatal(err)
				}
				if got, err := s.GetUint64([]byte("CurrentTerm")); err != nil || got != v {
					t.Fatalf("GetUint64 = %d, %v; want %d", got, err, v)
				}
			}
		}, false},
		{"missing stable keys", func(t *testing.T, im impl, s logAndStable) {
			v, err := s.Get([]byte("absent"))
			if len(v) != 0 || err == nil || err.Error() != "not found" {
				t.Fatalf("Get(absent) = %q, %v; want empty, \"not found\"", v, err)
			}
			u, err := s.GetUint64([]byte("absent"))
			if u != 0 || (err != nil && err.Error() != "not found") {
				t.Fatalf("GetUint64(absent) = %d, %v", u, err)
			}
			if im.strict && err != ErrKeyNotFound {
				t.Fatalf("GetUint64(absent) error = %v; want ErrKeyNotFound itself", err)
			}
		}, false},
		{"log and stable namespaces are separate", func(t *testing.T, im impl, s logAndStable) {
			if err := s.Set(append([]byte("l/"), 0, 0, 0, 0, 0, 0, 0, 1), []byte("x")); err != nil {
				t.Fatal(err)
			}
			wantBounds(t, s, 0, 0)
		}, false},
	}
	for _, im := range impls() {
		for _, tc := range cases {
			t.Run(im.name+"/"+tc.name, func(t *testing.T) {
				if tc.strictOnly && !im.strict {
					t.Skip("InmemStore tracks bounds only for raft's own DeleteRange patterns")
				}
				tc.run(t, im, im.open(t))
			})
		}
		if im.reopen == nil {
			continue
		}
		t.Run(im.name+"/reopen keeps everything", func(t *testing.T) {
			s := im.open(t)
			if err := s.StoreLogs(mkLogs(1, 300)); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteRange(1, 99); err != nil {
				t.Fatal(err)
			}
			if err := s.SetUint64([]byte("CurrentTerm"), 42); err != nil {
				t.Fatal(err)
			}
			if err := s.Set([]byte("LastVoteCand"), []byte("node-a")); err != nil {
				t.Fatal(err)
			}
			s = im.reopen(t, s)
			wantBounds(t, s, 100, 300)
			wantLogs(t, s, 90, 301, func(i uint64) bool { return i >= 100 && i <= 300 })
			if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 42 {
				t.Fatalf("GetUint64 after reopen = %d, %v", v, err)
			}
			if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "node-a" {
				t.Fatalf("Get after reopen = %q, %v", v, err)
			}
		})
	}
}

func TestStoreErrors(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"data over cap", s.StoreLog(&raft.Log{Index: 1, Data: make([]byte, MaxLogDataSize+1)}), ErrTooLarge},
		{"extensions over cap", s.StoreLog(&raft.Log{Index: 1, Extensions: make([]byte, MaxLogExtensionsSize+1)}), ErrTooLarge},
		{"unknown log type", s.StoreLog(&raft.Log{Index: 1, Type: 200}), ErrMalformedLog},
		{"stable key over cap", s.Set(make([]byte, MaxStableKeySize+1), nil), ErrTooLarge},
		{"stable value over cap", s.Set([]byte("k"), make([]byte, MaxStableValueSize+1)), ErrTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, tc.want) {
				t.Fatalf("err = %v; want %v", tc.err, tc.want)
			}
		})
	}
	wantBounds(t, s, 0, 0)
	if err := s.Set([]byte("short"), []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUint64([]byte("short")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("GetUint64 of 3 bytes = %v; want ErrCorrupt", err)
	}
	if v, err := s.Get([]byte("absent")); err != ErrKeyNotFound || v != nil {
		t.Fatalf("Get(absent) = %v, %v; want nil, ErrKeyNotFound", v, err)
	}
	if err := s.Set([]byte("empty"), nil); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get([]byte("empty")); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("Get(empty) = %v, %v; want present empty value", v, err)
	}
}

// TestLargeBatches covers batches and ranges larger than one Badger
// transaction (15% of the 8 MiB memtable), which the store splits.
func TestLargeBatches(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	cases := []struct {
		name     string
		from, to uint64
		size     int
	}{
		{"inline values over the txn size", 1, 64, 60 << 10},
		{"value-log values", 65, 72, 1 << 20},
		{"many small entries over the txn count", 73, 30_000, 8},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs []*raft.Log
			for i := tc.from; i <= tc.to; i++ {
				logs = append(logs, &raft.Log{Index: i, Data: bytes.Repeat([]byte{byte(i)}, tc.size)})
			}
			if err := s.StoreLogs(logs); err != nil {
				t.Fatal(err)
			}
			for _, i := range []uint64{tc.from, (tc.from + tc.to) / 2, tc.to} {
				var got raft.Log
				if err := s.GetLog(i, &got); err != nil || !bytes.Equal(got.Data, bytes.Repeat([]byte{byte(i)}, tc.size)) {
					t.Fatalf("GetLog(%d): len %d, %v", i, len(got.Data), err)
				}
			}
			wantBounds(t, s, 1, tc.to)
		})
	}
	t.Run("delete a range over the txn count", func(t *testing.T) {
		if err := s.DeleteRange(1, 29_000); err != nil {
			t.Fatal(err)
		}
		wantBounds(t, s, 29_001, 30_000)
		if err := s.DeleteRange(29_500, 30_000); err != nil {
			t.Fatal(err)
		}
		wantBounds(t, s, 29_001, 29_499)
	})
}
