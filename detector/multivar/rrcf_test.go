package multivar

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/vigil-mesh/vigil/detector"
)

func newRRCF(t testing.TB, dim, shingle int, seed uint64) *RRCF {
	t.Helper()
	cfg := DefaultRRCFConfig(dim)
	cfg.Shingle, cfg.Seed, cfg.Trees, cfg.TreeSize = shingle, seed, 16, 128
	m, err := NewRRCF(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkAll verifies every tree's structure, as a restore would.
func checkAll(t *testing.T, m *RRCF) {
	t.Helper()
	for i := range m.trees {
		if err := m.checkTree(&m.trees[i]); err != nil {
			t.Fatalf("tree %d: %v", i, err)
		}
	}
}

func TestRRCFClusterAndOutlier(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	m := newRRCF(t, 3, 1, 1)
	var normal []float64
	for i := range 1500 {
		s := m.Observe(int64(i), cluster(rng))
		if s < 0 || s > 1 {
			t.Fatalf("score %v", s)
		}
		if i > 400 {
			normal = append(normal, s)
		}
	}
	checkAll(t, m)
	high := 0
	for _, s := range normal {
		if s >= 0.99 {
			high++
		}
	}
	if frac := float64(high) / float64(len(normal)); frac > 0.04 {
		t.Fatalf("%.1f%% of in-cluster points score ≥ 0.99", 100*frac)
	}
	// RRCF cuts in proportion to each feature's range, so it sees outliers on the scale of the
	// features' spread; (10, 100, 5) — far out on the narrow third feature — is not one of them.
	for _, out := range [][]float64{{30, 100, 1}, {10, 200, 1}, {20, 130, 1}} {
		if s := m.Observe(0, out); s < 0.99 {
			t.Errorf("outlier %v scored %v", out, s)
		}
	}
	checkAll(t, m)
}

func TestRRCFStreamsAndDuplicates(t *testing.T) {
	for _, c := range []struct {
		file      string
		shingle   int
		anomalies []int
	}{
		{"spike.csv", 1, []int{500}},
		{"spike.csv", 4, []int{500}},
		{"cluster.csv", 1, []int{550}}, // row 580 is out on the narrow feature (see above)
		{"flat.csv", 1, nil},
	} {
		rows := readStream(t, c.file)
		m := newRRCF(t, len(rows[0]), c.shingle, 1)
		scores := make([]float64, len(rows))
		for i, x := range rows {
			scores[i] = m.Observe(int64(i), x)
		}
		checkAll(t, m)
		for _, i := range c.anomalies {
			if scores[i] < 0.99 {
				t.Errorf("%s shingle %d: row %d scored %v", c.file, c.shingle, i, scores[i])
			}
		}
	}
	// A constant stream is all duplicates: one leaf per tree, counting the window.
	m := newRRCF(t, 2, 1, 1)
	for range 500 {
		m.Observe(0, []float64{1, 1})
	}
	checkAll(t, m)
	if n := m.trees[0].nodes[m.trees[0].root]; n.dim != none || n.count != 128 {
		t.Fatalf("constant stream: root %+v", n)
	}
	if s := m.Observe(0, []float64{1, 9}); s < 0.99 {
		t.Fatalf("change after a constant stream scored %v", s)
	}
	for range 300 { // mixing duplicates and new points exercises forgetting duplicates' leaves
		m.Observe(0, []float64{float64(rand.IntN(3)), 1})
	}
	checkAll(t, m)
}

func TestRRCFDeterministicAndCheckpoint(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var stream [][]float64
	for range 600 {
		v := cluster(rng)
		if rng.IntN(5) == 0 {
			v = []float64{10, 100, 1} // duplicates
		}
		stream = append(stream, v)
	}
	a, b := newRRCF(t, 3, 2, 42), newRRCF(t, 3, 2, 42)
	for i, v := range stream[:300] {
		if x, y := a.Observe(int64(i), v), b.Observe(int64(i), v); x != y {
			t.Fatalf("same seed differs at %d", i)
		}
	}
	for _, at := range []int{1, 50, 300} {
		src := newRRCF(t, 3, 2, 42)
		for i, v := range stream[:at] {
			src.Observe(int64(i), v)
		}
		data, _ := src.MarshalBinary()
		dst := newRRCF(t, 3, 2, 42)
		if err := dst.UnmarshalBinary(data); err != nil {
			t.Fatalf("at %d: %v", at, err)
		}
		for i, v := range stream[at:] {
			if x, y := src.Observe(int64(i), v), dst.Observe(int64(i), v); x != y {
				t.Fatalf("restored at %d differs at +%d: %v vs %v", at, i, y, x)
			}
		}
		x, _ := src.MarshalBinary()
		y, _ := dst.MarshalBinary()
		if !bytes.Equal(x, y) {
			t.Fatalf("restored at %d: checkpoints diverge", at)
		}
	}
	c := newRRCF(t, 3, 2, 43)
	data, _ := a.MarshalBinary()
	if err := c.UnmarshalBinary(data); !errors.Is(err, detector.ErrCheckpoint) || !strings.Contains(err.Error(), "seed") {
		t.Fatalf("other seed: %v", err)
	}
}

func TestRRCFConfigRefused(t *testing.T) {
	for field, mut := range map[string]func(*RRCFConfig){
		"Dim":        func(c *RRCFConfig) { c.Dim = 0 },
		"Shingle":    func(c *RRCFConfig) { c.Shingle = 100 },
		"Trees":      func(c *RRCFConfig) { c.Trees = 0 },
		"TreeSize":   func(c *RRCFConfig) { c.TreeSize = 4 },
		"Calibrator": func(c *RRCFConfig) { c.Calibrator.MinCount = 0 },
	} {
		cfg := DefaultRRCFConfig(3)
		mut(&cfg)
		if _, err := NewRRCF(cfg); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
	}
}

func FuzzRRCFCheckpoint(f *testing.F) {
	cfg := DefaultRRCFConfig(2)
	cfg.Trees, cfg.TreeSize, cfg.Calibrator.Window, cfg.Calibrator.MinCount = 2, 8, 8, 1
	m, _ := NewRRCF(cfg)
	for i := range 12 {
		m.Observe(0, []float64{float64(i % 5), 1})
	}
	seed, _ := m.MarshalBinary()
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, _ := NewRRCF(cfg)
		if err := r.UnmarshalBinary(data); err != nil {
			return
		}
		for i := range 20 {
			if s := r.Observe(0, []float64{float64(i % 7), 2}); s < 0 || s > 1 {
				t.Fatalf("score %v", s)
			}
		}
		checkAll(t, r)
	})
}

func BenchmarkRRCFObserve(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	vs := make([][]float64, 4096)
	for i := range vs {
		vs[i] = append(cluster(rng), rng.Float64(), rng.Float64(), rng.Float64(), rng.Float64(), rng.Float64())
	}
	b.Run("rrcf-dim8-32x256", func(b *testing.B) {
		m, _ := NewRRCF(DefaultRRCFConfig(8))
		for _, v := range vs[:512] {
			m.Observe(0, v)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			m.Observe(0, vs[i%len(vs)])
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "vectors/s")
	})
	b.Run("hst-dim8-defaults", func(b *testing.B) {
		h, _ := NewHST(DefaultHSTConfig(8))
		for _, v := range vs[:512] {
			h.Observe(0, v)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			h.Observe(0, vs[i%len(vs)])
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "vectors/s")
	})
}
