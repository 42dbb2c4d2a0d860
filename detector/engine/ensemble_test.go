package engine

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vigil-mesh/vigil/detector"
	"github.com/vigil-mesh/vigil/detector/rules"
)

func thresholdModel(t *testing.T, th string) detector.MetricModel {
	m, err := rules.NewModel(rules.ModelConfig{Threshold: th})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEnsembleCombine(t *testing.T) {
	for _, c := range []struct {
		combine Combine
		want    func(s float64) bool
	}{
		{Max, func(s float64) bool { return s > 0.99 }},            // one member firing is enough
		{Mean, func(s float64) bool { return s > 0.5 && s < 0.8 }}, // half the weight fires
	} {
		cfg := DefaultEnsembleConfig()
		cfg.Members, cfg.Combine = []string{"threshold", "threshold"}, c.combine
		e, err := NewEnsemble(cfg, []detector.MetricModel{thresholdModel(t, "10"), thresholdModel(t, "100")})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			e.Observe(int64(i), 5)
		}
		if s := e.Observe(200, 50); !c.want(s) {
			t.Errorf("%s: value past one member's threshold scored %v", c.combine, s)
		}
	}
}

func TestEnsembleCheckpoint(t *testing.T) {
	cfg := DefaultEnsembleConfig()
	cfg.Members = []string{"threshold"}
	a, _ := NewEnsemble(cfg, []detector.MetricModel{thresholdModel(t, "10")})
	for i := range 60 {
		a.Observe(int64(i), float64(i%15))
	}
	data, _ := a.MarshalBinary()
	b, _ := NewEnsemble(cfg, []detector.MetricModel{thresholdModel(t, "10")})
	if err := b.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	for i := 60; i < 200; i++ {
		if x, y := a.Observe(int64(i), float64(i%23)), b.Observe(int64(i), float64(i%23)); x != y {
			t.Fatalf("diverged at %d: %v %v", i, x, y)
		}
	}
	x, _ := a.MarshalBinary()
	y, _ := b.MarshalBinary()
	if !bytes.Equal(x, y) {
		t.Fatal("checkpoints differ")
	}
	cfg2 := cfg
	cfg2.Members = []string{"other"}
	c, _ := NewEnsemble(cfg2, []detector.MetricModel{thresholdModel(t, "10")})
	if err := c.UnmarshalBinary(data); err == nil || !strings.Contains(err.Error(), `"other"`) {
		t.Fatalf("other members: %v", err)
	}
}

func TestEnsembleConfigRefused(t *testing.T) {
	for field, cfg := range map[string]EnsembleConfig{
		"Members":    {Combine: Max, Calibrator: detector.DefaultCalibratorConfig()},
		"Combine":    {Members: []string{"a"}, Combine: "median", Calibrator: detector.DefaultCalibratorConfig()},
		"Weights":    {Members: []string{"a"}, Combine: Mean, Weights: []float64{0}, Calibrator: detector.DefaultCalibratorConfig()},
		"Calibrator": {Members: []string{"a"}, Combine: Max},
	} {
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
	}
}
