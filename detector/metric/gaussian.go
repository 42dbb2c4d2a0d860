package metric

import (
	"fmt"
	"math"

	"github.com/vigil-mesh/vigil/detector"
)

// maxGaussianWindow caps Window (and so a checkpoint's length).
const maxGaussianWindow = 1 << 20

// GaussianConfig configures a windowed Gaussian model.
type GaussianConfig struct {
	// Window is the number of past points whose mean and deviation score the next one.
	// Default 1000. 0 means every past point (an expanding window). NAB's published
	// windowedGaussian scores are those of Window 6400, Step 100 (they match its reference
	// scores row by row). At most 1,048,576.
	Window int
	// Step is the number of points the window slides by at once once it is full: the mean and
	// deviation stay fixed for Step points. Default 1. At most Window.
	Step int
	// MinStd replaces a zero deviation (a constant window), in the stream's unit. Default 1e-6
	// (NAB's value).
	MinStd float64
	// NABScale returns NAB's score 1 − Q(|z|), which is 0.5 for a point at the mean, instead of
	// the default 1 − 2·Q(|z|) = erf(|z|/√2), which is 0 there. The order of scores is the same;
	// only the rounding of scores near 1 differs. Default false.
	NABScale bool
}

// DefaultGaussianConfig returns the defaults documented on GaussianConfig.
func DefaultGaussianConfig() GaussianConfig {
	return GaussianConfig{Window: 1000, Step: 1, MinStd: 1e-6}
}

// NABGaussianConfig returns the configuration of NAB's published windowedGaussian detector.
func NABGaussianConfig() GaussianConfig {
	return GaussianConfig{Window: 6400, Step: 100, MinStd: 1e-6, NABScale: true}
}

// Validate checks every field.
func (c GaussianConfig) Validate() error {
	switch {
	case c.Window < 0 || c.Window > maxGaussianWindow:
		return fmt.Errorf("%w: gaussian: Window must be in [0, %d], got %d", ErrConfig, maxGaussianWindow, c.Window)
	case c.Step < 1 || (c.Window > 0 && c.Step > c.Window):
		return fmt.Errorf("%w: gaussian: Step must be in [1, Window], got %d", ErrConfig, c.Step)
	case !(c.MinStd > 0) || math.IsInf(c.MinStd, 0):
		return fmt.Errorf("%w: gaussian: MinStd must be > 0 and finite, got %v", ErrConfig, c.MinStd)
	}
	return nil
}

// Gaussian is NAB's windowed Gaussian detector (nab/detectors/gaussian): a point's score is the
// Gaussian tail probability of its distance from the mean of the last Window points. The mean and
// the (population) deviation are kept incrementally and recomputed exactly once per Window
// points, so a point costs O(1).
type Gaussian struct {
	cfg GaussianConfig
	buf []float64 // ring of the last min(n, Window) values
	pos int       // next slot to overwrite once full
	n   int       // values in buf
	// mean and m2 (sum of squared deviations) of buf, updated incrementally.
	mean, m2 float64
	since    int       // updates since the last exact recomputation
	pending  []float64 // values waiting for the next slide (Step > 1)
}

var _ detector.MetricModel = (*Gaussian)(nil)

// NewGaussian builds a windowed Gaussian model.
func NewGaussian(cfg GaussianConfig) (*Gaussian, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Gaussian{cfg: cfg, buf: make([]float64, cfg.Window)}, nil
}

// Algorithm returns "gaussian".
func (m *Gaussian) Algorithm() string { return "gaussian" }

// Observe scores v against the current window and then slides the window over it. The very
// first point scores 0. t is not used.
func (m *Gaussian) Observe(_ int64, v float64) float64 {
	if !finite(v) {
		return 1
	}
	score := 0.0
	if m.n > 0 {
		sd := math.Sqrt(m.m2 / float64(m.n))
		if sd == 0 {
			sd = m.cfg.MinStd
		}
		// NAB (nupic normalProbability): Q(z) = 0.5·erfc(z/√2).
		q := 0.5 * math.Erfc(math.Abs(v-m.mean)/sd/math.Sqrt2)
		if m.cfg.NABScale {
			score = 1 - q
		} else {
			score = 1 - 2*q
		}
	}
	if len(m.buf) == 0 { // expanding window: Welford's update
		m.n++
		d := v - m.mean
		m.mean += d / float64(m.n)
		m.m2 += d * (v - m.mean)
		return unit(score)
	}
	if m.n == len(m.buf) && m.cfg.Step > 1 {
		m.pending = append(m.pending, v)
		if len(m.pending) == m.cfg.Step {
			for _, x := range m.pending {
				m.buf[m.pos] = x
				m.pos = (m.pos + 1) % len(m.buf)
			}
			m.pending = m.pending[:0]
			m.recompute()
		}
		return unit(score)
	}
	if m.n < len(m.buf) {
		m.buf[m.n] = v
		m.n++
		d := v - m.mean
		m.mean += d / float64(m.n)
		m.m2 += d * (v - m.mean)
	} else {
		old := m.buf[m.pos]
		m.buf[m.pos] = v
		m.pos = (m.pos + 1) % len(m.buf)
		nm := m.mean + (v-old)/float64(m.n)
		m.m2 += (v - old) * (v - nm + old - m.mean)
		m.mean = nm
	}
	m.since++
	if m.since >= len(m.buf) || m.m2 < 0 {
		m.recompute()
	}
	return unit(score)
}

// recompute sets mean and m2 exactly from the window (two passes, as numpy does).
func (m *Gaussian) recompute() {
	s := 0.0
	for _, x := range m.buf[:m.n] {
		s += x
	}
	mean := s / float64(m.n)
	m2 := 0.0
	for _, x := range m.buf[:m.n] {
		m2 += (x - mean) * (x - mean)
	}
	m.mean, m.m2, m.since = mean, m2, 0
}

// MarshalBinary writes a checkpoint (the window and the running sums).
func (m *Gaussian) MarshalBinary() ([]byte, error) {
	e := newEnc(m.Algorithm())
	e.i64(int64(len(m.buf)))
	e.i64(int64(m.n))
	e.i64(int64(m.pos))
	e.i64(int64(m.since))
	e.f64(m.mean)
	e.f64(m.m2)
	if len(m.buf) > 0 {
		for _, x := range m.buf[:m.n] {
			e.f64(x)
		}
		e.u64(uint64(len(m.pending)))
		for _, x := range m.pending {
			e.f64(x)
		}
	}
	return e.b, nil
}

// UnmarshalBinary restores a checkpoint written by a model with the same Window.
func (m *Gaussian) UnmarshalBinary(b []byte) error {
	d := newDec(b, m.Algorithm())
	w := d.i64()
	if d.err == nil && w != int64(len(m.buf)) {
		d.fail("gaussian: checkpoint of Window %d, model has %d", w, len(m.buf))
	}
	limit := len(m.buf)
	if limit == 0 {
		limit = math.MaxInt64
	}
	n := d.n(limit, 0, "gaussian: n")
	if len(m.buf) == 0 {
		pos, since, mean, m2 := d.i64(), d.i64(), d.f64(), d.f64()
		if err := d.done(); err != nil {
			return err
		}
		if pos != 0 || since != 0 || !finite(mean) || !finite(m2) || m2 < 0 {
			return fmt.Errorf("%w: gaussian: bad state", ErrCheckpoint)
		}
		m.n, m.mean, m.m2 = n, mean, m2
		return nil
	}
	pos, since := d.i64(), d.i64()
	mean, m2 := d.f64(), d.f64()
	vals := make([]float64, n)
	for i := range vals {
		vals[i] = d.f64()
	}
	np := d.n(m.cfg.Step-1, 8, "gaussian: pending")
	pending := make([]float64, np)
	for i := range pending {
		pending[i] = d.f64()
	}
	if err := d.done(); err != nil {
		return err
	}
	if pos < 0 || pos >= int64(len(m.buf)) || (n < len(m.buf) && pos != 0) || since < 0 || !finite(mean) || !finite(m2) {
		return fmt.Errorf("%w: gaussian: bad state", ErrCheckpoint)
	}
	for _, x := range append(vals, pending...) {
		if !finite(x) {
			return fmt.Errorf("%w: gaussian: non-finite value in the window", ErrCheckpoint)
		}
	}
	if m2 < 0 {
		return fmt.Errorf("%w: gaussian: negative sum of squares", ErrCheckpoint)
	}
	if np > 0 && n < len(m.buf) {
		return fmt.Errorf("%w: gaussian: pending values before the window is full", ErrCheckpoint)
	}
	copy(m.buf, vals)
	m.pending = append(m.pending[:0], pending...)
	m.n, m.pos, m.since, m.mean, m.m2 = n, int(pos), int(since), mean, m2
	return nil
}
