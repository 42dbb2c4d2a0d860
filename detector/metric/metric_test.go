package metric

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-mesh/vigil/detector"
)

// stream is a testdata series: "unix seconds,value" lines after a "#" comment.
type stream struct {
	t []int64
	v []float64
}

func loadStream(t testing.TB, name string) stream {
	t.Helper()
	fh, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var s stream
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		a, b, _ := strings.Cut(line, ",")
		sec, err1 := strconv.ParseInt(a, 10, 64)
		v, err2 := strconv.ParseFloat(b, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: bad line %q", name, line)
		}
		s.t = append(s.t, sec*1e9)
		s.v = append(s.v, v)
	}
	return s
}

// models are the configurations under test, each built fresh by its constructor.
var models = []struct {
	name string
	new  func() (detector.MetricModel, error)
}{
	{"ewma", func() (detector.MetricModel, error) { return NewEWMA(DefaultEWMAConfig()) }},
	{"gaussian", func() (detector.MetricModel, error) { return NewGaussian(DefaultGaussianConfig()) }},
	{"gaussian-nab", func() (detector.MetricModel, error) { return NewGaussian(NABGaussianConfig()) }},
	// cad quantises the range [0, 100] (the test streams' values lie in it).
	{"cad", func() (detector.MetricModel, error) {
		cfg := DefaultCADConfig()
		cfg.RestPeriod = 60
		return NewCAD(cfg)
	}},
	// blend is NAB's "vigil" configuration on the test range.
	{"blend", func() (detector.MetricModel, error) {
		cfg := DefaultCADConfig()
		cfg.RestPeriod = 60
		c, err := NewCAD(cfg)
		if err != nil {
			return nil, err
		}
		gcfg := DefaultGaussianConfig()
		gcfg.Window = 0
		g, err := NewGaussian(gcfg)
		if err != nil {
			return nil, err
		}
		return NewBlend([]detector.MetricModel{c, g}, []float64{0.85, 0.15})
	}},
}

// liveModels learn the range from the stream (checkpoint tests only: on ±0.5 noise the learned
// range makes every noise level a distinct fact).
var liveModels = []struct {
	name string
	new  func() (detector.MetricModel, error)
}{
	{"cad-live", func() (detector.MetricModel, error) {
		cfg := DefaultCADConfig()
		cfg.RangeLearning, cfg.RestPeriod = 300, 60
		return NewCAD(cfg)
	}},
}

func run(t testing.TB, m detector.MetricModel, s stream) []float64 {
	out := make([]float64, len(s.v))
	for i := range s.v {
		out[i] = m.Observe(s.t[i], s.v[i])
		if !(out[i] >= 0 && out[i] <= 1) {
			t.Fatalf("%s: score %v at %d outside [0,1]", m.Algorithm(), out[i], i)
		}
	}
	return out
}

func maxOf(s []float64) (float64, int) {
	best, at := -1.0, -1
	for i, x := range s {
		if x > best {
			best, at = x, i
		}
	}
	return best, at
}

func TestModelsOnStreams(t *testing.T) {
	for _, mc := range models {
		t.Run(mc.name, func(t *testing.T) {
			score := func(name string) []float64 {
				m, err := mc.new()
				if err != nil {
					t.Fatal(err)
				}
				return run(t, m, loadStream(t, name))
			}
			// After a warm-up of 1000 points: nothing unusual happens before index 1500.
			lo := 1000
			spike := score("spike.csv")
			if base, _ := maxOf(spike[lo:1500]); !(spike[1500] > 0.99 && spike[1500] > base) {
				t.Errorf("spike: score %.4f at the spike, max %.4f before it", spike[1500], base)
			}
			step := score("step.csv")
			if base, _ := maxOf(step[lo:1500]); !(step[1500] > 0.99 && step[1500] > base) {
				t.Errorf("step: score %.4f at the step, max %.4f before it", step[1500], base)
			}
			flat := score("flat.csv")
			floor := 0.0
			if mc.name == "gaussian-nab" {
				floor = 0.5 // NAB's scale: a point at the mean scores 0.5
			}
			if m, at := maxOf(flat[lo:]); m > floor+0.01 {
				t.Errorf("flat: score %.4f at %d", m, lo+at)
			}
			seasonal := score("seasonal.csv")
			t.Logf("spike %.4f step %.4f; maxima before: spike %.4f step %.4f; seasonal max %.4f", spike[1500], step[1500],
				must(maxOf(spike[lo:1500])), must(maxOf(step[lo:1500])), must(maxOf(seasonal[lo:])))
			if m, at := maxOf(seasonal[lo:]); m > seasonalLimit[mc.name] {
				t.Errorf("seasonal: score %.4f at %d, limit %.2f", m, lo+at, seasonalLimit[mc.name])
			}
		})
	}
}

func must(x float64, _ int) float64 { return x }

// seasonalLimit is the highest score each model may give a steady seasonal series. The mean and
// deviation models see the season as spread (|z| up to √2 for a sine), so they stay below the
// score of 3 deviations (0.9973); CAD learns the pattern.
var seasonalLimit = map[string]float64{"ewma": 0.99, "gaussian": 0.99, "gaussian-nab": 0.99, "cad": 0.5, "blend": 0.6}

func TestCheckpointRestoresExactly(t *testing.T) {
	for _, mc := range append(models, liveModels...) {
		for _, name := range []string{"seasonal.csv", "spike.csv", "step.csv"} {
			cuts := []int{0, 1, 150, 299, 300, 1200, 1501}
			if mc.name == "cad-live" {
				cuts = []int{0, 299, 300, 1200}
			}
			for _, cut := range cuts {
				s := loadStream(t, name)
				if mc.name == "cad-live" { // slow on noise: a shorter stream
					s.t, s.v = s.t[:1400], s.v[:1400]
				}
				a, _ := mc.new()
				for i := range cut {
					a.Observe(s.t[i], s.v[i])
				}
				snap, err := a.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				b, _ := mc.new()
				if err := b.UnmarshalBinary(snap); err != nil {
					t.Fatalf("%s %s cut %d: %v", mc.name, name, cut, err)
				}
				for i := cut; i < len(s.v); i++ {
					x, y := a.Observe(s.t[i], s.v[i]), b.Observe(s.t[i], s.v[i])
					if x != y {
						t.Fatalf("%s %s cut %d: index %d: original %v, restored %v", mc.name, name, cut, i, x, y)
					}
				}
			}
		}
	}
}

func TestCheckpointRefusesBadInput(t *testing.T) {
	s := loadStream(t, "seasonal.csv")
	for _, mc := range append(models, liveModels...) {
		a, _ := mc.new()
		for i := range 500 {
			a.Observe(s.t[i], s.v[i])
		}
		snap, _ := a.MarshalBinary()
		before, _ := a.MarshalBinary()
		for _, bad := range [][]byte{nil, snap[:len(snap)/2], append(append([]byte(nil), snap...), 1, 2, 3)} {
			if err := a.UnmarshalBinary(bad); err == nil || !errors.Is(err, ErrCheckpoint) {
				t.Errorf("%s: bad checkpoint of %d bytes: error %v", mc.name, len(bad), err)
			}
		}
		after, _ := a.MarshalBinary()
		if string(before) != string(after) {
			t.Errorf("%s: a refused checkpoint changed the model", mc.name)
		}
	}
	// A checkpoint of another algorithm is refused.
	e, _ := NewEWMA(DefaultEWMAConfig())
	g, _ := NewGaussian(DefaultGaussianConfig())
	snap, _ := e.MarshalBinary()
	if err := g.UnmarshalBinary(snap); err == nil {
		t.Error("gaussian accepted an ewma checkpoint")
	}
	// A checkpoint of another window is refused.
	cfg := DefaultGaussianConfig()
	cfg.Window = 10
	g10, _ := NewGaussian(cfg)
	snap, _ = g10.MarshalBinary()
	if err := g.UnmarshalBinary(snap); err == nil || !strings.Contains(err.Error(), "Window") {
		t.Errorf("gaussian accepted a checkpoint of another Window: %v", err)
	}
}

func TestInvalidConfigsNameTheField(t *testing.T) {
	ewma := func(f func(*EWMAConfig)) error { c := DefaultEWMAConfig(); f(&c); _, err := NewEWMA(c); return err }
	gauss := func(f func(*GaussianConfig)) error {
		c := DefaultGaussianConfig()
		f(&c)
		_, err := NewGaussian(c)
		return err
	}
	cad := func(f func(*CADConfig)) error { c := DefaultCADConfig(); f(&c); _, err := NewCAD(c); return err }
	cases := []struct {
		field string
		err   error
	}{
		{"Alpha", ewma(func(c *EWMAConfig) { c.Alpha = 0 })},
		{"Alpha", ewma(func(c *EWMAConfig) { c.Alpha = 1.5 })},
		{"Warmup", ewma(func(c *EWMAConfig) { c.Warmup = -1 })},
		{"MinStd", ewma(func(c *EWMAConfig) { c.MinStd = 0 })},
		{"Window", gauss(func(c *GaussianConfig) { c.Window = -1 })},
		{"Window", gauss(func(c *GaussianConfig) { c.Window = 1 << 21 })},
		{"Step", gauss(func(c *GaussianConfig) { c.Step = 0 })},
		{"Step", gauss(func(c *GaussianConfig) { c.Step = 2000 })},
		{"MinStd", gauss(func(c *GaussianConfig) { c.MinStd = -1 })},
		{"Min and Max", cad(func(c *CADConfig) { c.Min, c.Max = 10, 5 })},
		{"BaseThreshold", cad(func(c *CADConfig) { c.BaseThreshold = 0 })},
		{"RestPeriod", cad(func(c *CADConfig) { c.RestPeriod = 0 })},
		{"MaxLeftSemiContextsLength", cad(func(c *CADConfig) { c.MaxLeftSemiContextsLength = 0 })},
		{"MaxActiveNeurons", cad(func(c *CADConfig) { c.MaxActiveNeurons = 0 })},
		{"NumNormValueBits", cad(func(c *CADConfig) { c.NumNormValueBits = 40 })},
		{"MaxContexts", cad(func(c *CADConfig) { c.MaxContexts = -1 })},
		{"RangeLearning", cad(func(c *CADConfig) { c.RangeLearning = -1 })},
		{"RangeMargin", cad(func(c *CADConfig) { c.RangeMargin = -0.5 })},
	}
	e1, _ := NewEWMA(DefaultEWMAConfig())
	blend := func(m []detector.MetricModel, w []float64) error { _, err := NewBlend(m, w); return err }
	cases = append(cases,
		struct {
			field string
			err   error
		}{"weights must sum to 1", blend([]detector.MetricModel{e1}, []float64{0.5})},
		struct {
			field string
			err   error
		}{"weights[0]", blend([]detector.MetricModel{e1}, []float64{-1})},
		struct {
			field string
			err   error
		}{"members[0]", blend([]detector.MetricModel{nil}, []float64{1})},
		struct {
			field string
			err   error
		}{"2 weights for 1 members", blend([]detector.MetricModel{e1}, []float64{0.5, 0.5})},
	)
	for _, tc := range cases {
		if tc.err == nil || !errors.Is(tc.err, ErrConfig) || !strings.Contains(tc.err.Error(), tc.field) {
			t.Errorf("%s: error %v", tc.field, tc.err)
		}
	}
	for _, mc := range models {
		if _, err := mc.new(); err != nil {
			t.Errorf("%s: default config refused: %v", mc.name, err)
		}
	}
}

func TestNonFiniteValuesAreNotLearned(t *testing.T) {
	s := loadStream(t, "seasonal.csv")
	for _, mc := range models {
		a, _ := mc.new()
		b, _ := mc.new()
		for i := range 600 {
			a.Observe(s.t[i], s.v[i])
			b.Observe(s.t[i], s.v[i])
		}
		for _, bad := range []float64{nan(), inf(1), inf(-1)} {
			if got := a.Observe(0, bad); got != 1 {
				t.Errorf("%s: score %v for %v, want 1", mc.name, got, bad)
			}
		}
		for i := 600; i < 1200; i++ {
			if x, y := a.Observe(s.t[i], s.v[i]), b.Observe(s.t[i], s.v[i]); x != y {
				t.Fatalf("%s: non-finite input changed later scores at %d: %v vs %v", mc.name, i, x, y)
			}
		}
	}
}

// TestCADMaxContextsBoundsMemory checks that the cap holds and the model still scores.
func TestCADMaxContextsBoundsMemory(t *testing.T) {
	s := loadStream(t, "seasonal.csv")
	cfg := DefaultCADConfig()
	cfg.RangeLearning, cfg.MaxContexts = 300, 200
	m, err := NewCAD(cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, m, s)
	if m.Contexts() > 200 {
		t.Errorf("%d contexts, cap 200", m.Contexts())
	}
	free, _ := NewCAD(func() CADConfig { c := cfg; c.MaxContexts = 0; return c }())
	run(t, free, s)
	if free.Contexts() <= 200 {
		t.Errorf("uncapped model learned only %d contexts: the cap test proves nothing", free.Contexts())
	}
}
