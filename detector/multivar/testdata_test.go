package multivar

import (
	"encoding/csv"
	"os"
	"strconv"
	"testing"
)

func readStream(t *testing.T, name string) [][]float64 {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]float64
	for _, rec := range recs[1:] {
		row := make([]float64, len(rec))
		for i, s := range rec {
			if row[i], err = strconv.ParseFloat(s, 64); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, row)
	}
	return out
}

// TestHSTStreams runs HST (defaults, seed 1) over the small streams in testdata and checks
// where it scores high.
func TestHSTStreams(t *testing.T) {
	for _, c := range []struct {
		file      string
		anomalies []int  // rows that must score ≥ 0.99
		quiet     [2]int // rows [from, to) where at most maxHigh rows may score ≥ 0.99
		maxHigh   int
	}{
		{"flat.csv", nil, [2]int{300, 600}, 9},
		{"spike.csv", []int{500}, [2]int{300, 500}, 6},
		{"step.csv", []int{400}, [2]int{1000, 1200}, 6}, // the new level is normal two windows later
		{"cluster.csv", []int{550, 580}, [2]int{300, 550}, 8},
	} {
		t.Run(c.file, func(t *testing.T) {
			rows := readStream(t, c.file)
			h := newHST(t, len(rows[0]), 1)
			scores := make([]float64, len(rows))
			for i, x := range rows {
				scores[i] = h.Observe(int64(i), x)
			}
			for _, i := range c.anomalies {
				if scores[i] < 0.99 {
					t.Errorf("row %d scored %v, want ≥ 0.99", i, scores[i])
				}
			}
			high := 0
			for _, s := range scores[c.quiet[0]:c.quiet[1]] {
				if s >= 0.99 {
					high++
				}
			}
			t.Logf("%s: anomalies %v; %d of %d ordinary rows ≥ 0.99", c.file, pick(scores, c.anomalies), high, c.quiet[1]-c.quiet[0])
			if high > c.maxHigh {
				t.Errorf("%d ordinary rows in [%d,%d) scored ≥ 0.99, want at most %d", high, c.quiet[0], c.quiet[1], c.maxHigh)
			}
		})
	}
}

func pick(s []float64, idx []int) []float64 {
	var out []float64
	for _, i := range idx {
		out = append(out, s[i])
	}
	return out
}
