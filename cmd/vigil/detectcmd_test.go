package main

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-mesh/vigil/detector/catalog"
)

const detectData = "testdata/detect/"

// scores parses detect's CSV output and returns the header and the anomaly_score column.
func scores(t *testing.T, out string, delim rune) ([]string, []float64) {
	t.Helper()
	r := csv.NewReader(strings.NewReader(out))
	r.Comma = delim
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatalf("output is not CSV: %v\n%s", err, out)
	}
	var s []float64
	for _, rec := range recs[1:] {
		v, err := strconv.ParseFloat(rec[len(rec)-1], 64)
		if err != nil || v < 0 || v > 1 {
			t.Fatalf("score %q not in [0,1]", rec[len(rec)-1])
		}
		s = append(s, v)
	}
	return recs[0], s
}

func argmax(xs []float64) int {
	best := 0
	for i, x := range xs {
		if x > xs[best] {
			best = i
		}
	}
	return best
}

func TestDetectThresholdSpike(t *testing.T) {
	out, code := run(t, "detect", "--algorithm", "threshold", "--param", "threshold=50", detectData+"spike.csv")
	if code != exitOK {
		t.Fatalf("code %d: %s", code, out)
	}
	header, s := scores(t, out, ',')
	if strings.Join(header, ",") != "timestamp,value,anomaly_score" || len(s) != 80 {
		t.Fatalf("header %v, %d rows", header, len(s))
	}
	for i, v := range s {
		if want := map[bool]float64{true: 1, false: 0}[i == 70]; v != want {
			t.Fatalf("row %d scored %v, want %v", i, v, want)
		}
	}
	if !strings.Contains(out, "\n2024-01-01 05:50:00,60.000,1.000000\n") {
		t.Fatalf("the spike row is not written back as read:\n%s", out)
	}
}

func TestDetectHSTSpikeAndTrainRows(t *testing.T) {
	out, code := run(t, "detect", "--param", "window=16", "--param", "calibrator.min_count=8", "--train-rows", "20", detectData+"spike.csv")
	if code != exitOK {
		t.Fatalf("code %d: %s", code, out)
	}
	_, s := scores(t, out, ',')
	for i := range 20 {
		if s[i] != 0 {
			t.Fatalf("baseline row %d scored %v", i, s[i])
		}
	}
	if i := argmax(s); i != 70 || s[70] < 0.99 {
		t.Fatalf("highest score at row %d (%v), want the spike at 70 ≥ 0.99", i, s[70])
	}
}

func TestDetectHSTVectorWithDelimiterAndOut(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "scored.csv")
	out, code := run(t, "detect", "--delimiter", ";", "--time-column", "time", "--columns", "cpu,mem",
		"--algorithm", "hst", "--param", "window=16", "--param", "seed=5", "--out", dst, detectData+"cluster.csv")
	if code != exitOK || out != "" {
		t.Fatalf("code %d: %q", code, out)
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	header, s := scores(t, string(b), ';')
	if strings.Join(header, ";") != "time;cpu;mem;host;anomaly_score" {
		t.Fatalf("header %v", header)
	}
	if i := argmax(s); i != 75 || s[75] < 0.99 {
		t.Fatalf("highest score at row %d (%v), want the outlier at 75", i, s[75])
	}
	// Deterministic: the same run again gives the same bytes.
	out2, _ := run(t, "detect", "--delimiter", ";", "--time-column", "time", "--columns", "cpu,mem",
		"--algorithm", "hst", "--param", "window=16", "--param", "seed=5", detectData+"cluster.csv")
	if out2 != string(b) {
		t.Fatal("two runs differ")
	}
}

func TestDetectTrainFileAndTimes(t *testing.T) {
	out, code := run(t, "detect", "--algorithm", "threshold", "--param", "threshold=2.5", "--train", detectData+"spike.csv", detectData+"rfc3339.csv")
	if code != exitOK {
		t.Fatalf("code %d: %s", code, out)
	}
	if _, s := scores(t, out, ','); len(s) != 3 || s[2] != 1 || s[0] != 0 {
		t.Fatalf("scores %v", s)
	}
	// Unix seconds and no time column.
	if out, code := run(t, "detect", "--algorithm", "threshold", "--param", "threshold=1", "--time-column", "ts", detectData+"no_time.csv"); code != exitOK || !strings.Contains(out, "1,2,1.000000") {
		t.Fatalf("unix seconds: %d %s", code, out)
	}
	if out, code := run(t, "detect", "--algorithm", "threshold", "--param", "threshold=1", "--time-column", "", detectData+"no_time.csv"); code != exitOK || !strings.Contains(out, "ts,value,anomaly_score\n1,2,1.000000") {
		t.Fatalf("row-number time: %d %s", code, out)
	}
	// A step back in time is scored at the previous row's time, not refused.
	if out, code := run(t, "detect", "--algorithm", "threshold", "--param", "threshold=1.5", detectData+"backwards.csv"); code != exitOK || !strings.HasSuffix(out, "2024-01-01 00:00:00,2,1.000000\n") {
		t.Fatalf("backwards: %d %s", code, out)
	}
	if out, code := run(t, "detect", "--algorithm", "threshold", "--param", "threshold=1", detectData+"header_only.csv"); code != exitOK || out != "timestamp,value,anomaly_score\n" {
		t.Fatalf("header only: %d %q", code, out)
	}
}

func TestDetectBadInput(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "out.csv")
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"non-numeric", []string{detectData + "bad_number.csv"}, exitError, `bad_number.csv:3: column "value": "abc" is not a finite number`},
		{"bad time", []string{detectData + "bad_time.csv"}, exitError, `bad_time.csv:3: column "timestamp": cannot read "yesterday" as a time`},
		{"ragged", []string{detectData + "ragged.csv"}, exitError, `ragged.csv:3: ragged row`},
		{"bad quote", []string{detectData + "bad_quote.csv"}, exitError, `bad_quote.csv:2: column`},
		{"missing time column", []string{detectData + "no_time.csv"}, exitError, `no_time.csv:1: no time column "timestamp"`},
		{"missing value column", []string{"--columns", "cpu", detectData + "spike.csv"}, exitError, `spike.csv:1: no column "cpu"`},
		{"time as value", []string{"--columns", "timestamp", detectData + "spike.csv"}, exitError, `is the time column`},
		{"duplicate header", []string{detectData + "dup_header.csv"}, exitError, `column "value" appears twice`},
		{"empty", []string{detectData + "empty.csv"}, exitError, `empty.csv: empty file`},
		{"missing file", []string{detectData + "nope.csv"}, exitError, `nope.csv`},
		{"train columns differ", []string{"--train", detectData + "train_other.csv", detectData + "spike.csv"}, exitError, `train_other.csv has value columns ["other"], spike.csv has ["value"]`},
		{"unknown algorithm", []string{"--algorithm", "nope", detectData + "spike.csv"}, exitUsage, `unknown algorithm "nope"`},
		{"unknown param", []string{"--param", "tres=3", detectData + "spike.csv"}, exitUsage, `unknown param "tres"`},
		{"bad param value", []string{"--param", "trees=many", detectData + "spike.csv"}, exitUsage, `param "trees": many is not an integer`},
		{"param without =", []string{"--param", "trees", detectData + "spike.csv"}, exitUsage, `want key=value`},
		{"param twice", []string{"--param", "trees=2", "--param", " trees=3", detectData + "spike.csv"}, exitUsage, `--param trees given twice`},
		{"out of range param", []string{"--param", "trees=0", detectData + "spike.csv"}, exitUsage, `Trees 0 out of range`},
		{"bad delimiter", []string{"--delimiter", ";;", detectData + "spike.csv"}, exitUsage, `--delimiter ";;"`},
		{"negative train rows", []string{"--train-rows", "-1", detectData + "spike.csv"}, exitUsage, `--train-rows -1`},
		{"too many train rows", []string{"--train-rows", "81", detectData + "spike.csv"}, exitUsage, `has 80 rows`},
		{"two files", []string{detectData + "spike.csv", detectData + "spike.csv"}, exitUsage, `at most one FILE`},
		{"sequences with a vector model", []string{"--sequences", "--algorithm", "hst", detectData + "sessions.txt"}, exitUsage, `hst is a vector model`},
		{"sequences without algorithm", []string{"--sequences", detectData + "sessions.txt"}, exitUsage, `needs --algorithm`},
		{"bad train file", []string{"--train", detectData + "bad_number.csv", detectData + "spike.csv"}, exitError, `bad_number.csv:3`},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, code := run(t, append([]string{"detect", "--out", dst}, c.args...)...)
			if code != c.code || !strings.Contains(out, c.want) {
				t.Fatalf("code %d, want %d; output %q, want it to contain %q", code, c.code, out, c.want)
			}
			if c.code != exitOK {
				if _, err := os.Stat(dst); !os.IsNotExist(err) {
					t.Fatal("a failed run wrote --out")
				}
			}
			os.Remove(dst)
		})
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]int64{
		"1970-01-01 00:00:10":  10e9,
		"1970-01-01T00:00:10Z": 10e9,
		"10":                   10e9,
		"10.5":                 10.5e9,
		" 1700000000 ":         1700000000e9,
	} {
		if got, err := parseTime(in); err != nil || got != want {
			t.Errorf("%q = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "1e300", "NaN", "2024-13-01 00:00:00", "noon"} {
		if _, err := parseTime(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func FuzzReadTable(f *testing.F) {
	for _, name := range []string{"spike.csv", "rfc3339.csv", "ragged.csv", "bad_quote.csv", "no_time.csv"} {
		b, err := os.ReadFile(detectData + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := readTable(data, "fuzz.csv", ',', "timestamp", nil)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.csv") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if len(tab.rows) != len(tab.values) || len(tab.rows) != len(tab.times) {
			t.Fatal("table columns out of step")
		}
		for i := 1; i < len(tab.times); i++ {
			if tab.times[i] < tab.times[i-1] {
				t.Fatal("accepted backwards time")
			}
		}
	})
}

// TestDetectSequences runs every sequence model in the catalogue over testdata sessions (the
// models themselves live in detector/sequence; on a tree without any this test says so and
// skips). Output: one session,anomaly_score line per input line, baseline sessions 0.
func TestDetectSequences(t *testing.T) {
	var names []string
	for _, n := range catalog.Names() {
		if e, _ := catalog.Lookup(n); e.Kind == catalog.Sequence {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		t.Skip("no sequence model in the catalogue on this tree")
	}
	for _, name := range names {
		out, code := run(t, "detect", "--sequences", "--algorithm", name, "--train-rows", "2", detectData+"sessions.txt")
		if code != exitOK {
			t.Fatalf("%s: code %d: %s", name, code, out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || lines[0] != "session,anomaly_score" || lines[1] != "1,0.000000" || lines[2] != "2,0.000000" {
			t.Fatalf("%s: output %q", name, out)
		}
		s, err := strconv.ParseFloat(strings.TrimPrefix(lines[3], "3,"), 64)
		if err != nil || s < 0 || s > 1 {
			t.Fatalf("%s: session 3 line %q", name, lines[3])
		}
	}
}

// TestDetectSessionScore scores system-call sessions with the cover model by their end (the
// model's verdict on a whole session) and by the mean: the two intrusions (a web worker that
// execs a privileged shell, a login that opens a reverse shell) score above both normal
// sessions. A bad --session-score, or one without --sequences, is a usage error.
func TestDetectSessionScore(t *testing.T) {
	for _, how := range []string{"end", "mean"} {
		out, code := run(t, "detect", "--sequences", "--algorithm", "cover", "--session-score", how,
			"--train", detectData+"syscalls-train.txt", detectData+"syscalls.txt")
		if code != exitOK {
			t.Fatalf("%s: code %d: %s", how, code, out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 5 {
			t.Fatalf("%s: output %q", how, out)
		}
		var v [4]float64
		for i := range v {
			_, val, _ := strings.Cut(lines[i+1], ",")
			f, err := strconv.ParseFloat(val, 64)
			if err != nil || f < 0 || f > 1 {
				t.Fatalf("%s: line %q", how, lines[i+1])
			}
			v[i] = f
		}
		if min(v[2], v[3]) <= max(v[0], v[1]) {
			t.Errorf("%s: normal sessions %v %v, intrusions %v %v: want the intrusions higher", how, v[0], v[1], v[2], v[3])
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--sequences", "--algorithm", "cover", "--session-score", "median", "--train-rows", "1"}, `--session-score "median": want max, end or mean`},
		{[]string{"--algorithm", "hst", "--session-score", "end"}, "--session-score applies to --sequences only"},
	} {
		out, code := run(t, append(append([]string{"detect"}, c.args...), detectData+"syscalls.txt")...)
		if code != exitUsage || !strings.Contains(out, c.want) {
			t.Errorf("%v: code %d, output %q, want usage error %q", c.args, code, out, c.want)
		}
	}
}

// repoRoot walks up from the working directory to the directory holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// TestDetectNAB scores a real NAB series (22,695 rows, with one clock step back) with the
// default model and with shingled RRCF: every row comes back, in order, with a score in [0,1].
func TestDetectNAB(t *testing.T) {
	path := filepath.Join(repoRoot(t), "..", "shared", "data", "nab", "data", "realKnownCause", "machine_temperature_system_failure.csv")
	in, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("NAB data not present (%v); it lives in ../shared/data/nab", err)
	}
	inLines := strings.Split(strings.TrimSpace(string(in)), "\n")
	for _, args := range [][]string{
		{"--columns", "value"},
		{"--algorithm", "rrcf", "--param", "shingle=4", "--param", "trees=16", "--columns", "value"},
	} {
		out, code := run(t, append(append([]string{"detect"}, args...), path)...)
		if code != exitOK {
			t.Fatalf("%v: code %d: %.300s", args, code, out)
		}
		outLines := strings.Split(strings.TrimSpace(out), "\n")
		if len(outLines) != len(inLines) {
			t.Fatalf("%v: %d lines out, %d in", args, len(outLines), len(inLines))
		}
		for i := range inLines {
			if !strings.HasPrefix(outLines[i], strings.TrimSpace(inLines[i])+",") {
				t.Fatalf("%v: line %d %q does not start with the input line %q", args, i+1, outLines[i], inLines[i])
			}
		}
		scores(t, out, ',')
	}
}
