package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// snapshotDir returns name → content of every file in dir.
func snapshotDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

func sameDir(t *testing.T, a, b map[string][]byte) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("directory changed: %d files before, %d after", len(a), len(b))
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			t.Fatalf("file %s changed", k)
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(t *testing.T, dir string) // dir exists and is empty
		path    func(dir string) string
		want    error  // nil: any error wrapping Badger's
		wantMsg string // substring of the error besides the dir
		// mayChange: Badger itself opened the directory (it carries our marker
		// file), so it may have added a memtable file.
		mayChange bool
	}{
		{
			name:  "random files",
			setup: func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "notes.txt"), "hello") },
			want:  ErrForeignDir,
		},
		{
			name:  "path is a file",
			setup: func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "f"), "x") },
			path:  func(dir string) string { return filepath.Join(dir, "f") },
			want:  ErrForeignDir,
		},
		{
			name: "foreign badger database",
			setup: func(t *testing.T, dir string) {
				db, err := badger.Open(smallBadger(dir))
				if err != nil {
					t.Fatal(err)
				}
				if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("alerts/1"), []byte("x")) }); err != nil {
					t.Fatal(err)
				}
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
			},
			want: ErrForeignDir,
		},
		{
			name: "foreign badger database with a copied marker file",
			setup: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, markerFile), string(markerValue)+"\n")
				db, err := badger.Open(smallBadger(dir))
				if err != nil {
					t.Fatal(err)
				}
				if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("alerts/1"), []byte("x")) }); err != nil {
					t.Fatal(err)
				}
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
			},
			want:      ErrForeignDir,
			mayChange: true,
		},
		{
			name: "future marker file",
			setup: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, markerFile), "vigil raft log+stable store v2\n")
			},
			want: ErrFormat,
		},
		{
			name: "future format marker key",
			setup: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, markerFile), string(markerValue)+"\n")
				db, err := badger.Open(smallBadger(dir))
				if err != nil {
					t.Fatal(err)
				}
				if err := db.Update(func(txn *badger.Txn) error { return txn.Set(markerKey, []byte("vigil raft log+stable store v2")) }); err != nil {
					t.Fatal(err)
				}
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
			},
			want:      ErrFormat,
			mayChange: true,
		},
		{
			name: "corrupt manifest",
			setup: func(t *testing.T, dir string) {
				s, err := Open(dir, Options{Logger: testLogger(t)})
				if err != nil {
					t.Fatal(err)
				}
				if err := s.StoreLogs(mkLogs(1, 10)); err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, "MANIFEST"), "this is not a badger manifest at all")
			},
			wantMsg: "open badger database",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			path := dir
			if tc.path != nil {
				path = tc.path(dir)
			}
			before := snapshotDir(t, dir)
			s, err := Open(path, Options{Logger: testLogger(t)})
			if err == nil {
				_ = s.Close()
				t.Fatal("Open succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v; want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("error %q does not name %s / %q", err, path, tc.wantMsg)
			}
			if !tc.mayChange {
				sameDir(t, before, snapshotDir(t, dir))
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestOpenCreatesAndAdopts(t *testing.T) {
	t.Run("creates a missing directory with mode 0700", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "a", "raft")
		s := openTestStore(t, dir)
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("stat = %v, %v", fi, err)
		}
		_ = s
	})
	t.Run("adopts an empty badger database with the marker file", func(t *testing.T) {
		// A first Open that crashed after Badger created its files but before
		// the marker key was written leaves exactly this.
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, markerFile), string(markerValue)+"\n")
		db, err := badger.Open(smallBadger(dir))
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		s := openTestStore(t, dir)
		wantBounds(t, s, 0, 0)
	})
	t.Run("second open of a live store fails and names the dir", func(t *testing.T) {
		dir := t.TempDir()
		openTestStore(t, dir)
		s, err := Open(dir, Options{Logger: testLogger(t)})
		if err == nil {
			_ = s.Close()
			t.Fatal("second Open succeeded")
		}
		if !strings.Contains(err.Error(), dir) {
			t.Fatalf("error %q does not name %s", err, dir)
		}
	})
}

func TestClose(t *testing.T) {
	s, err := Open(t.TempDir(), Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	_, errFirst := s.FirstIndex()
	_, errLast := s.LastIndex()
	_, errGet := s.Get([]byte("k"))
	_, errU := s.GetUint64([]byte("k"))
	cases := []struct {
		name string
		err  error
	}{
		{"FirstIndex", errFirst},
		{"LastIndex", errLast},
		{"GetLog", s.GetLog(1, new(raft.Log))},
		{"StoreLog", s.StoreLog(mkLog(1))},
		{"StoreLogs", s.StoreLogs(mkLogs(1, 2))},
		{"DeleteRange", s.DeleteRange(1, 2)},
		{"Set", s.Set([]byte("k"), nil)},
		{"SetUint64", s.SetUint64([]byte("k"), 1)},
		{"Get", errGet},
		{"GetUint64", errU},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, ErrClosed) {
				t.Fatalf("err = %v; want ErrClosed", tc.err)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	cases := []struct {
		name  string
		opts  Options
		field string // "" = valid
	}{
		{"zero value is the default", Options{}, ""},
		{"defaults", DefaultOptions(), ""},
		{"badger's own sizes", badgerDefaultSizes(), ""},
		{"tiny memtable", Options{MemTableSize: 1 << 10}, "MemTableSize"},
		{"negative memtables", Options{NumMemtables: -1}, "NumMemtables"},
		{"negative block cache", Options{BlockCacheSize: -1}, "BlockCacheSize"},
		{"value log smaller than an entry", Options{ValueLogFileSize: MaxLogEntrySize}, "ValueLogFileSize"},
		{"value threshold over 15% of memtable", Options{ValueThreshold: 2 << 20}, "ValueThreshold"},
		{"one compactor", Options{NumCompactors: 1}, "NumCompactors"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate = %v; want ErrInvalidOptions naming %s", err, tc.field)
			}
			if _, err := Open(t.TempDir(), tc.opts); !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("Open = %v; want ErrInvalidOptions", err)
			}
		})
	}
}

// badgerDefaultSizes is Badger's own default profile, for comparison.
func badgerDefaultSizes() Options {
	return Options{
		MemTableSize:     64 << 20,
		NumMemtables:     5,
		BlockCacheSize:   256 << 20,
		ValueLogFileSize: 1<<30 - 1,
		ValueThreshold:   1 << 20,
		NumCompactors:    4,
	}
}

// recordHandler keeps every record it handles.
type recordHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r)
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func TestBadgerLogger(t *testing.T) {
	h := &recordHandler{}
	l := slogBadger{slog.New(h)}
	l.Debugf("debug %d", 1)
	l.Infof("info %d", 2)
	l.Warningf("warn %d\n", 3)
	l.Errorf("error %d", 4)
	var got []string
	for _, r := range h.recs {
		r.Attrs(func(a slog.Attr) bool {
			got = append(got, fmt.Sprintf("%s:%s", r.Level, a.Value))
			return true
		})
	}
	if want := []string{"WARN:warn 3", "ERROR:error 4"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("logged %v; want %v", got, want)
	}
}

// TestConcurrentUse runs raft's access pattern under -race: one appender, a
// compactor deleting the prefix, and readers of the bounds and entries.
func TestConcurrentUse(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	const batches, per = 40, 16
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(3)
	go func() {
		defer wg.Done()
		defer close(done)
		for b := uint64(0); b < batches; b++ {
			if err := s.StoreLogs(mkLogs(b*per+1, (b+1)*per)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() { // compactor: keep the last 32 entries
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			last, _ := s.LastIndex()
			first, _ := s.FirstIndex()
			if first != 0 && last > first+32 {
				if err := s.DeleteRange(first, last-32); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	go func() { // reader: whatever lies between the bounds is readable
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			last, _ := s.LastIndex()
			if last == 0 {
				continue
			}
			var l raft.Log
			// The last entry cannot be compacted away (the compactor keeps 32).
			if err := s.GetLog(last, &l); err != nil || !sameLog(&l, mkLog(last)) {
				t.Errorf("GetLog(%d) = %+v, %v", last, l, err)
				return
			}
		}
	}()
	wg.Wait()
	first, _ := s.FirstIndex()
	wantBounds(t, s, first, batches*per)
	wantLogs(t, s, first, batches*per, func(uint64) bool { return true })
}

// smallBadger is a foreign Badger database's options, sized to open fast under -race.
func smallBadger(dir string) badger.Options {
	return badger.DefaultOptions(dir).WithLogger(nil).WithMemTableSize(1 << 20).
		WithBlockCacheSize(1 << 20).WithValueLogFileSize(1 << 20).WithValueThreshold(1 << 10)
}
