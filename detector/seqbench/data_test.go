package seqbench

import (
	"archive/zip"
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-mesh/vigil/detector"
)

func TestParseSessions(t *testing.T) {
	got, err := ParseSessions(strings.NewReader("5 22 5\n\n  11 9 \n"), "x")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got[0]) != 3 || got[1][1] != 9 {
		t.Fatalf("got %v", got)
	}
	for _, c := range []struct{ in, want string }{
		{"1 2\n3 x\n", "x:2: field 2 \"x\""},
		{"0\n", "x:1: field 1 \"0\""},
		{"1 -2\n", "x:1: field 2"},
		{"99999999999\n", "x:1: field 1"},
	} {
		_, err := ParseSessions(strings.NewReader(c.in), "x")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want it to contain %q", c.in, err, c.want)
		}
	}
	if _, err := ParseSessions(strings.NewReader(strings.Repeat("1 ", maxLine)), "x"); err == nil {
		t.Error("a line over the limit was accepted")
	}
}

func TestReadADFA(t *testing.T) {
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	files := map[string]string{
		"ADFA-LD/ADFA-LD+Syscall+List.txt":                       "#define __NR_read 0\n",
		"ADFA-LD/Training_Data_Master/UTD-1.txt":                 "0 1 2 \n",
		"ADFA-LD/Validation_Data_Master/UVD-1.txt":               "3 4",
		"ADFA-LD/Attack_Data_Master/Hydra_FTP_3/UAD-Hydra-1.txt": "5 6 7",
		"ADFA-LD/Attack_Data_Master/Web_Shell_1/UAD-WS-1.txt":    "8",
	}
	for name, body := range files {
		w, _ := z.Create(name)
		w.Write([]byte(body))
	}
	z.Close()
	path := filepath.Join(t.TempDir(), "a.zip")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := ReadADFA(path)
	if err != nil {
		t.Fatal(err)
	}
	eq := func(a, b []detector.Action) bool { return string(toBytes(a)) == string(toBytes(b)) }
	if len(d.Train) != 1 || !eq(d.Train[0], []detector.Action{1, 2, 3}) {
		t.Errorf("train %v (syscall n is action n+1)", d.Train)
	}
	if len(d.Validation) != 1 || len(d.Attack["Hydra_FTP"]) != 1 || len(d.Attack["Web_Shell"]) != 1 || len(d.Attack) != 2 {
		t.Errorf("validation %v attack %v", d.Validation, d.Attack)
	}
	// a non-numeric trace is an error naming the member
	buf.Reset()
	z = zip.NewWriter(&buf)
	w, _ := z.Create("ADFA-LD/Training_Data_Master/UTD-9.txt")
	w.Write([]byte("1 two"))
	z.Close()
	os.WriteFile(path, buf.Bytes(), 0o600)
	if _, err := ReadADFA(path); err == nil || !strings.Contains(err.Error(), "UTD-9.txt: field 2") {
		t.Errorf("bad trace: %v", err)
	}
}

func toBytes(a []detector.Action) []byte {
	var b []byte
	for _, x := range a {
		b = append(b, byte(x), byte(x>>8), byte(x>>16), byte(x>>24))
	}
	return b
}

func TestAUC(t *testing.T) {
	cases := []struct {
		pos, neg []float64
		want     float64
	}{
		{[]float64{3, 4}, []float64{1, 2}, 1},
		{[]float64{1, 2}, []float64{3, 4}, 0},
		{[]float64{1}, []float64{1}, 0.5},
		{[]float64{2, 0}, []float64{1}, 0.5},
		{[]float64{0.8, 0.6, 0.4}, []float64{0.5, 0.3, 0.7}, 6.0 / 9}, // pairs won: 0.8>all(3), 0.6>0.5,0.3(2), 0.4>0.3(1)
	}
	for _, c := range cases {
		if got := AUC(c.pos, c.neg); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("AUC(%v, %v) = %v, want %v", c.pos, c.neg, got, c.want)
		}
	}
	if !math.IsNaN(AUC(nil, []float64{1})) {
		t.Error("AUC with no positives is not NaN")
	}
}

func TestDetectionAtFPR(t *testing.T) {
	neg := make([]float64, 100)
	for i := range neg {
		neg[i] = float64(i) // 0..99
	}
	pos := []float64{200, 96, 95.5, 94, 10}
	// 5% of 100 negatives may pass: threshold is the 6th largest negative, 94.
	rate, th := DetectionAtFPR(pos, neg, 0.05)
	if th != 94 || rate != 3.0/5 {
		t.Fatalf("rate %v threshold %v, want 0.6 and 94", rate, th)
	}
}

func TestPRF(t *testing.T) {
	p, r, f := PRF(90, 10, 10)
	if p != 0.9 || r != 0.9 || math.Abs(f-0.9) > 1e-12 {
		t.Fatalf("%v %v %v", p, r, f)
	}
}

func TestDataDirMissing(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\n"), 0o600)
	if _, err := DataDir(dir); !errors.Is(err, ErrNoData) {
		t.Fatalf("err %v, want ErrNoData", err)
	}
}
