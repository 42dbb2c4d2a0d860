package metric

import (
	"fmt"
	"math"

	"github.com/vigil-mesh/vigil/detector"
)

// EWMAConfig configures an EWMA model.
type EWMAConfig struct {
	// Alpha is the weight of the newest point in the moving mean and variance, in (0,1).
	// Default 0.01 (a memory of about 100 points).
	Alpha float64
	// Warmup is the number of first points that are learned and score 0. Default 30.
	Warmup int
	// MinStd is the smallest deviation used in the z-score, in the stream's unit, so that a
	// constant stream does not make every change infinite. Default 1e-6.
	MinStd float64
}

// DefaultEWMAConfig returns the defaults documented on EWMAConfig.
func DefaultEWMAConfig() EWMAConfig { return EWMAConfig{Alpha: 0.01, Warmup: 30, MinStd: 1e-6} }

// Validate checks every field.
func (c EWMAConfig) Validate() error {
	switch {
	case !(c.Alpha > 0 && c.Alpha < 1):
		return fmt.Errorf("%w: ewma: Alpha must be in (0,1), got %v", ErrConfig, c.Alpha)
	case c.Warmup < 0:
		return fmt.Errorf("%w: ewma: Warmup must be >= 0, got %d", ErrConfig, c.Warmup)
	case !(c.MinStd > 0) || math.IsInf(c.MinStd, 0):
		return fmt.Errorf("%w: ewma: MinStd must be > 0 and finite, got %v", ErrConfig, c.MinStd)
	}
	return nil
}

// EWMA scores a point by its distance from an exponentially weighted mean, in exponentially
// weighted standard deviations: score = erf(|z|/√2), so 0 at the mean, 0.68 at one deviation,
// 0.9973 at three.
type EWMA struct {
	cfg      EWMAConfig
	n        int64
	mean, vr float64
}

var _ detector.MetricModel = (*EWMA)(nil)

// NewEWMA builds an EWMA model.
func NewEWMA(cfg EWMAConfig) (*EWMA, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &EWMA{cfg: cfg}, nil
}

// Algorithm returns "ewma".
func (m *EWMA) Algorithm() string { return "ewma" }

// Observe scores v and then learns it. t is not used.
func (m *EWMA) Observe(_ int64, v float64) float64 {
	if !finite(v) {
		return 1
	}
	score := 0.0
	if m.n >= int64(m.cfg.Warmup) && m.n > 0 {
		sd := max(math.Sqrt(m.vr), m.cfg.MinStd)
		score = math.Erf(math.Abs(v-m.mean) / sd / math.Sqrt2)
	}
	if m.n == 0 {
		m.mean = v
	} else {
		diff := v - m.mean
		inc := m.cfg.Alpha * diff
		m.mean += inc
		m.vr = (1 - m.cfg.Alpha) * (m.vr + diff*inc)
	}
	m.n++
	return unit(score)
}

// MarshalBinary writes a checkpoint.
func (m *EWMA) MarshalBinary() ([]byte, error) {
	e := newEnc(m.Algorithm())
	e.i64(m.n)
	e.f64(m.mean)
	e.f64(m.vr)
	return e.b, nil
}

// UnmarshalBinary restores a checkpoint written by MarshalBinary.
func (m *EWMA) UnmarshalBinary(b []byte) error {
	d := newDec(b, m.Algorithm())
	n, mean, vr := d.i64(), d.f64(), d.f64()
	if err := d.done(); err != nil {
		return err
	}
	if n < 0 || !finite(mean) || !finite(vr) || vr < 0 {
		return fmt.Errorf("%w: ewma: bad state n=%d mean=%v var=%v", ErrCheckpoint, n, mean, vr)
	}
	m.n, m.mean, m.vr = n, mean, vr
	return nil
}
