package multivar

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/vigil-mesh/vigil/detector"
)

func newHST(t testing.TB, dim int, seed uint64) *HST {
	t.Helper()
	cfg := DefaultHSTConfig(dim)
	cfg.Seed = seed
	h, err := NewHST(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// cluster draws a 3-d Gaussian cluster around (10, 100, 1) with a little spread.
func cluster(rng *rand.Rand) []float64 {
	return []float64{10 + rng.NormFloat64(), 100 + 5*rng.NormFloat64(), 1 + 0.1*rng.NormFloat64()}
}

func TestHSTClusterAndOutlier(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	h := newHST(t, 3, 1)
	for i := range 256 {
		if s := h.Observe(int64(i), cluster(rng)); s != 0 {
			t.Fatalf("bootstrap vector %d scored %v", i, s)
		}
	}
	var normal []float64
	for i := range 2000 {
		s := h.Observe(int64(i), cluster(rng))
		if s < 0 || s > 1 {
			t.Fatalf("score %v out of [0,1]", s)
		}
		if i >= 500 {
			normal = append(normal, s)
		}
	}
	high := 0
	for _, s := range normal {
		if s >= 0.99 {
			high++
		}
	}
	if frac := float64(high) / float64(len(normal)); frac > 0.03 {
		t.Fatalf("%.1f%% of in-cluster vectors score ≥ 0.99", 100*frac)
	}
	for _, out := range [][]float64{{30, 100, 1}, {10, 200, 1}, {10, 100, 5}} {
		if s := h.Observe(0, out); s < 0.99 {
			t.Errorf("outlier %v scored %v, want ≥ 0.99", out, s)
		}
	}
}

func TestHSTFlatThenSpikeAndStep(t *testing.T) {
	h := newHST(t, 2, 3)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range 1000 {
		h.Observe(int64(i), []float64{5 + 0.01*rng.Float64(), 1})
	}
	if s := h.Observe(0, []float64{50, 1}); s < 0.99 {
		t.Fatalf("spike on a flat stream scored %v", s)
	}
	// A step to a new level is anomalous at first and becomes normal after a couple of windows.
	first := h.Observe(0, []float64{8, 1})
	for range 3 * 256 {
		h.Observe(0, []float64{8 + 0.01*rng.Float64(), 1})
	}
	later := h.Observe(0, []float64{8.005, 1})
	if !(first >= 0.95 && later < 0.9) {
		t.Fatalf("step: first %v, after three windows %v", first, later)
	}
}

func TestHSTDeterministicAndCheckpoint(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var stream [][]float64
	for range 1500 {
		v := cluster(rng)
		if rng.IntN(50) == 0 {
			v[0] += 20
		}
		stream = append(stream, v)
	}
	a, b := newHST(t, 3, 42), newHST(t, 3, 42)
	for i, v := range stream[:700] {
		if sa, sb := a.Observe(int64(i), v), b.Observe(int64(i), v); sa != sb {
			t.Fatalf("same seed differs at %d: %v %v", i, sa, sb)
		}
	}
	for _, at := range []int{100, 700} { // mid-bootstrap and running
		src := newHST(t, 3, 42)
		for i, v := range stream[:at] {
			src.Observe(int64(i), v)
		}
		data, err := src.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		dst := newHST(t, 3, 42)
		if err := dst.UnmarshalBinary(data); err != nil {
			t.Fatalf("at %d: %v", at, err)
		}
		for i, v := range stream[at:] {
			if s1, s2 := src.Observe(int64(i), v), dst.Observe(int64(i), v); s1 != s2 {
				t.Fatalf("restored at %d differs at +%d: %v vs %v", at, i, s2, s1)
			}
		}
		x, _ := src.MarshalBinary()
		y, _ := dst.MarshalBinary()
		if !bytes.Equal(x, y) {
			t.Fatalf("restored at %d: checkpoints diverge", at)
		}
	}
	c := newHST(t, 3, 43)
	diff := false
	for i, v := range stream[:700] {
		if a.Observe(int64(i), v) != c.Observe(int64(i), v) {
			diff = true
		}
	}
	if !diff {
		t.Fatal("a different seed gave identical scores")
	}
	data, _ := a.MarshalBinary()
	if err := c.UnmarshalBinary(data); !errors.Is(err, detector.ErrCheckpoint) || !strings.Contains(err.Error(), "seed") {
		t.Fatalf("checkpoint of another seed: %v", err)
	}
}

func TestHSTFeedbackLowersScore(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	h := newHST(t, 3, 1)
	for range 1000 {
		h.Observe(0, cluster(rng))
	}
	out := []float64{18, 100, 1}
	data, _ := h.MarshalBinary()
	before := h.Observe(0, out)
	h2 := newHST(t, 3, 1)
	_ = h2.UnmarshalBinary(data)
	h2.Observe(0, out)
	for range 20 {
		h2.Feedback(0)
	}
	if after := h2.Observe(0, out); !(after < before) {
		t.Fatalf("feedback did not lower the score: before %v after %v", before, after)
	}
}

func TestHSTConfigRefused(t *testing.T) {
	for field, mut := range map[string]func(*HSTConfig){
		"Dim":        func(c *HSTConfig) { c.Dim = 0 },
		"Trees":      func(c *HSTConfig) { c.Trees = 0 },
		"Depth":      func(c *HSTConfig) { c.Depth = 13 },
		"Window":     func(c *HSTConfig) { c.Window = 70000 },
		"SizeLimit":  func(c *HSTConfig) { c.SizeLimit = 1 },
		"Calibrator": func(c *HSTConfig) { c.Calibrator.Window = 1 },
	} {
		cfg := DefaultHSTConfig(3)
		mut(&cfg)
		if _, err := NewHST(cfg); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err = %v", field, err)
		}
	}
}

func TestHSTWrongLengthOrNaN(t *testing.T) {
	h := newHST(t, 2, 1)
	for range 300 {
		h.Observe(0, []float64{1, 2})
	}
	before, _ := h.MarshalBinary()
	if h.Observe(0, []float64{1}) != 0 || h.Observe(0, []float64{1, nan()}) != 0 {
		t.Fatal("bad vector scored")
	}
	after, _ := h.MarshalBinary()
	if !bytes.Equal(before, after) {
		t.Fatal("a bad vector changed the model")
	}
}

func nan() float64 { var z float64; return z / z }

func FuzzHSTCheckpoint(f *testing.F) {
	cfg := DefaultHSTConfig(2)
	cfg.Window, cfg.Trees, cfg.Depth, cfg.Calibrator.Window, cfg.Calibrator.MinCount = 16, 2, 2, 8, 1
	h, _ := NewHST(cfg)
	for i := range 20 {
		h.Observe(0, []float64{float64(i), 1})
	}
	seed, _ := h.MarshalBinary()
	f.Add(seed)
	boot, _ := NewHST(cfg)
	boot.Observe(0, []float64{1, 1})
	b, _ := boot.MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, _ := NewHST(cfg)
		if err := m.UnmarshalBinary(data); err != nil {
			return
		}
		for i := range 40 {
			if s := m.Observe(0, []float64{float64(i), 2}); s < 0 || s > 1 {
				t.Fatalf("score %v", s)
			}
		}
	})
}

func BenchmarkHSTObserve(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	vs := make([][]float64, 4096)
	for i := range vs {
		vs[i] = append(cluster(rng), rng.Float64(), rng.Float64(), rng.Float64(), rng.Float64(), rng.Float64())
	}
	b.Run("hst-dim8", func(b *testing.B) {
		h := newHST(b, 8, 1)
		for _, v := range vs {
			h.Observe(0, v)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			h.Observe(0, vs[i%len(vs)])
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "vectors/s")
	})
	// Baseline: a per-feature z-score (running mean and variance), the trivial multivariate model.
	b.Run("baseline-zscore-dim8", func(b *testing.B) {
		var n float64
		mean, m2 := make([]float64, 8), make([]float64, 8)
		sink := 0.0
		for i := 0; i < b.N; i++ {
			v := vs[i%len(vs)]
			n++
			worst := 0.0
			for q, x := range v {
				d := x - mean[q]
				mean[q] += d / n
				m2[q] += d * (x - mean[q])
				if n > 1 {
					worst = max(worst, d*d/(m2[q]/(n-1)+1e-12))
				}
			}
			sink += worst
		}
		_ = sink
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "vectors/s")
	})
}

// TestFeedbackFindsTheAlertedObservation: feedback names the alert's time, and the model folds
// the raw score it gave then, not a later ordinary one.
func TestFeedbackFindsTheAlertedObservation(t *testing.T) {
	for _, mk := range []func() detector.VectorModel{
		func() detector.VectorModel { return newHST(t, 3, 1) },
		func() detector.VectorModel { return newRRCF(t, 3, 1, 1) },
	} {
		rng := rand.New(rand.NewPCG(9, 9))
		m := mk()
		for i := range 1000 {
			m.Observe(int64(i), cluster(rng))
		}
		out := []float64{18, 130, 1}
		m.Observe(1000, out)
		for i := 1001; i < 1004; i++ {
			m.Observe(int64(i), cluster(rng))
		}
		data, _ := m.MarshalBinary()
		score := func(feedbackAt int64) float64 {
			c := mk()
			if err := c.UnmarshalBinary(data); err != nil {
				t.Fatal(err)
			}
			for range 10 {
				c.(detector.FeedbackModel).Feedback(feedbackAt)
			}
			return c.Observe(2000, out)
		}
		if atAlert, atLatest := score(1000), score(1003); !(atAlert < atLatest) {
			t.Fatalf("%s: feedback at the alert's time gave %v, at the latest observation %v", m.Algorithm(), atAlert, atLatest)
		}
	}
}

func TestHSTStateBytes(t *testing.T) {
	if got := DefaultHSTConfig(8).StateBytes(); got != 4*16*127+16*8+16*128+16*8 {
		t.Fatalf("StateBytes = %d", got)
	}
}
