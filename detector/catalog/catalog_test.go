package catalog

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/detector"
	"github.com/vigil-mesh/vigil/detector/engine"
	"github.com/vigil-mesh/vigil/detector/multivar"
)

func TestNames(t *testing.T) {
	got := strings.Join(Names(), ",")
	if got != "cad,cover,ensemble,ewma,gaussian,hst,lstm,ngram,rrcf,threshold" {
		t.Fatalf("Names = %s", got)
	}
	if _, err := Lookup("ewma2"); err == nil || !strings.Contains(err.Error(), `"ewma2"`) || !strings.Contains(err.Error(), "hst") {
		t.Fatalf("unknown: %v", err)
	}
}

func TestDecode(t *testing.T) {
	cfg := multivar.DefaultHSTConfig(4)
	err := Decode(map[string]any{
		"trees": 8, "size_limit": "0.2", "Seed": uint64(9), "window": 64.0,
		"calibrator.window": "64", "calibrator": map[string]any{"min_count": 4},
	}, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Trees != 8 || cfg.SizeLimit != 0.2 || cfg.Seed != 9 || cfg.Window != 64 || cfg.Calibrator.Window != 64 || cfg.Calibrator.MinCount != 4 || cfg.Depth != 6 {
		t.Fatalf("decoded %+v", cfg)
	}
	var d struct {
		For   time.Duration
		Names []string
		On    bool
	}
	if err := Decode(map[string]any{"for": "30s", "names": "a, b", "on": "true"}, &d); err != nil || d.For != 30*time.Second || len(d.Names) != 2 || d.Names[1] != "b" || !d.On {
		t.Fatalf("decoded %+v, %v", d, err)
	}
}

func TestDecodeRefused(t *testing.T) {
	for want, p := range map[string]map[string]any{
		`unknown param "tres"`:                   {"tres": 3},
		`param "trees": x is not an integer`:     {"trees": "x"},
		`param "trees": 1.5 is not an integer`:   {"trees": 1.5},
		`param "seed": -1 is not a non-negative`: {"seed": -1},
		`unknown param "calibrator.size"`:        {"calibrator.size": 3},
		`param "trees.x": trees is not a group`:  {"trees.x": 3},
	} {
		cfg := multivar.DefaultHSTConfig(2)
		if err := Decode(p, &cfg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: err = %v, want %q", p, err, want)
		}
	}
}

func TestBuild(t *testing.T) {
	m, err := NewMetric("threshold", map[string]any{"threshold": "80%", "for": "2s"})
	if err != nil || m.Algorithm() != "threshold" {
		t.Fatal(m, err)
	}
	v, err := NewVector("hst", 5, map[string]any{"trees": "4"})
	if err != nil || v.Dim() != 5 || v.Algorithm() != "hst" {
		t.Fatal(err)
	}
	if r, err := NewVector("rrcf", 2, map[string]any{"shingle": "4", "tree_size": 64}); err != nil || r.Algorithm() != "rrcf" || r.Dim() != 2 {
		t.Fatalf("rrcf: %v", err)
	}
	if _, err := NewVector("hst", 5, map[string]any{"trees": "0"}); err == nil || !strings.Contains(err.Error(), "Trees") {
		t.Fatalf("out of range: %v", err)
	}
	if _, err := NewVector("threshold", 2, nil); err == nil || !strings.Contains(err.Error(), "threshold is a metric model") {
		t.Fatalf("wrong kind: %v", err)
	}
	if _, err := NewMetric("threshold", nil); err == nil || !strings.Contains(err.Error(), "Threshold") {
		t.Fatalf("missing threshold: %v", err)
	}
	if _, err := NewSequence("threshold", nil); err == nil {
		t.Fatal("a metric model built as a sequence model")
	}
}

func TestEnsembleFromParams(t *testing.T) {
	e, err := NewMetric("ensemble", map[string]any{
		"members":              "threshold",
		"combine":              "mean",
		"threshold.threshold":  "10",
		"calibrator.min_count": 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if s := e.Observe(int64(i), 1); s > 0.5 {
			t.Fatalf("ordinary value scored %v", s)
		}
	}
	if s := e.Observe(100, 50); s < 0.99 {
		t.Fatalf("value over the member's threshold scored %v", s)
	}
	for want, p := range map[string]map[string]any{
		"Members has 0":              {},
		`not a member`:               {"members": "threshold", "threshold.threshold": "1", "hst.trees": 3},
		"cannot contain an ensemble": {"members": "ensemble"},
		`Combine "median"`:           {"members": "threshold", "combine": "median"},
		`unknown param "memebers"`:   {"memebers": "threshold"},
		"threshold model: Threshold": {"members": "threshold"},
	} {
		if _, err := NewMetric("ensemble", p); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: err = %v, want %q", p, err, want)
		}
	}
}

// TestVectorAsMetric runs rrcf (shingled) and hst on one stream as metric models, alone and in
// an ensemble, and checks a spike on a flat stream stands out and checkpoints restore.
func TestVectorAsMetric(t *testing.T) {
	for _, c := range []struct {
		name   string
		params map[string]any
	}{
		{"rrcf", map[string]any{"shingle": 4, "trees": 8, "tree_size": 64}},
		{"hst", map[string]any{"window": 32}},
		{"ensemble", map[string]any{"members": "rrcf,hst", "rrcf.trees": 8, "rrcf.tree_size": 64, "hst.window": 32}},
	} {
		m, err := NewMetric(c.name, c.params)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var spike float64
		for i := range 400 {
			v := 5 + float64(i%7)*0.01
			if i == 350 {
				v = 50
			}
			s := m.Observe(int64(i), v)
			if i == 350 {
				spike = s
			}
			if i == 200 {
				data, _ := m.MarshalBinary()
				r, _ := NewMetric(c.name, c.params)
				if err := r.UnmarshalBinary(data); err != nil {
					t.Fatalf("%s: restore: %v", c.name, err)
				}
				for j := 201; j < 260; j++ {
					if a, b := m.Observe(int64(j), 5), r.Observe(int64(j), 5); a != b {
						t.Fatalf("%s: restored model differs", c.name)
					}
				}
			}
		}
		if spike < 0.99 {
			t.Errorf("%s: spike scored %v", c.name, spike)
		}
	}
}

func TestSequenceEntries(t *testing.T) {
	for _, name := range []string{"ngram", "lstm", "cover"} {
		m, err := NewSequence(name, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m.Algorithm() != name {
			t.Fatalf("%s: Algorithm = %q", name, m.Algorithm())
		}
		if err := m.Fit([][]detector.Action{{1, 2, 3, 1, 2, 3}, {1, 2, 3}}); err != nil {
			t.Fatalf("%s: Fit: %v", name, err)
		}
		s := m.Start()
		s.Observe(1)
		if _, ok := s.(detector.Ender); !ok {
			t.Fatalf("%s: its session is not a detector.Ender", name)
		}
		if _, err := NewMetric(name, nil); err == nil {
			t.Fatalf("%s built as a metric model", name)
		}
	}
	if _, err := NewSequence("ngram", map[string]any{"no_such_param": 1}); err == nil {
		t.Fatal("unknown ngram param accepted")
	}
	if m, err := NewSequence("cover", map[string]any{"folds": "3", "max_actions": 1000, "prior": 8}); err != nil || m.Algorithm() != "cover" {
		t.Fatalf("cover with params: %v", err)
	}
	if _, err := NewSequence("cover", map[string]any{"folds": 1}); err == nil || !strings.Contains(err.Error(), "Folds=1") {
		t.Fatalf("cover folds=1: %v", err)
	}
}

// TestSplitSequenceParams: the engine's params are taken out (any spelling), the model's are
// left for NewSequence, and a bad value leaves the config unchanged.
func TestSplitSequenceParams(t *testing.T) {
	cfg := engine.DefaultConfig()
	rest, err := SplitSequenceParams(map[string]any{"baselineSessions": "30", "session-gap": "2m", "top_g": 3, "online": true}, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Baseline.Sessions != 30 || cfg.SessionGap != 2*time.Minute || len(rest) != 2 || rest["top_g"] != 3 {
		t.Fatalf("cfg %+v gap %v rest %v", cfg.Baseline, cfg.SessionGap, rest)
	}
	if _, err := NewSequence("ngram", rest); err != nil {
		t.Fatal(err)
	}
	before := cfg
	if _, err := SplitSequenceParams(map[string]any{"baseline_sessions": 10, "baseline_actions": 0}, &cfg); err == nil ||
		err.Error() != "baseline_actions: 0 is not in 1..10000000" {
		t.Fatalf("bad value: %v", err)
	}
	if cfg.Baseline != before.Baseline {
		t.Fatal("a refused split changed the config")
	}
}
