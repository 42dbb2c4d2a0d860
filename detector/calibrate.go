package detector

import (
	"fmt"
	"math"
	"slices"

	"github.com/vigil-mesh/vigil/detector/internal/wire"
)

// CalibratorConfig configures a Calibrator.
type CalibratorConfig struct {
	// Window is how many recent raw scores the calibrator remembers. Memory is 16×Window
	// bytes. Default 128; range [8, 65536].
	Window int
	// MinCount is how many raw scores it must have seen before it scores above 0 (its
	// warm-up). Default 16; range [1, Window].
	MinCount int
	// TailQuantile is where the fitted exponential tail begins, as a quantile of the window
	// (0.9 = above the 90th percentile). Default 0.9; range [0.5, 1).
	TailQuantile float64
}

// DefaultCalibratorConfig returns Window 128, MinCount 16, TailQuantile 0.9.
func DefaultCalibratorConfig() CalibratorConfig {
	return CalibratorConfig{Window: 128, MinCount: 16, TailQuantile: 0.9}
}

// Validate checks the ranges.
func (c CalibratorConfig) Validate() error {
	switch {
	case c.Window < 8 || c.Window > 65536:
		return fmt.Errorf("calibrator: Window %d out of range [8, 65536]", c.Window)
	case c.MinCount < 1 || c.MinCount > c.Window:
		return fmt.Errorf("calibrator: MinCount %d out of range [1, Window=%d]", c.MinCount, c.Window)
	case !(c.TailQuantile >= 0.5 && c.TailQuantile < 1):
		return fmt.Errorf("calibrator: TailQuantile %v out of range [0.5, 1)", c.TailQuantile)
	}
	return nil
}

// Calibrator maps a raw score on any scale (higher = more unusual) to [0,1] by where it falls
// among the last Window raw scores it has seen:
//
//   - in the body (at or below the TailQuantile-th value u of the window) the score is the
//     empirical CDF, (#below + ½·#equal) / n;
//   - above u it is the peaks-over-threshold tail with an exponential excess distribution
//     (a generalised Pareto with shape 0): 1 − (k/n)·exp(−(x−u)/β), where k is the number of
//     remembered scores above u and β their mean excess over u. So a raw score one β past u
//     scores about 1 − 0.1/e ≈ 0.96 with the defaults, and the score keeps rising towards 1
//     for values far beyond everything seen, instead of saturating at the window's maximum.
//
// Score returns the calibrated value of x against the history before x, then remembers x.
// It is deterministic and reads no clock. Not safe for concurrent use.
type Calibrator struct {
	cfg    CalibratorConfig
	ring   []float64 // the last len(ring) raw scores, oldest at pos once full
	pos    int
	sorted []float64 // the same values, ascending
}

// NewCalibrator returns an empty calibrator.
func NewCalibrator(cfg CalibratorConfig) (*Calibrator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Calibrator{cfg: cfg}, nil
}

// Count is how many raw scores are remembered (at most Window).
func (c *Calibrator) Count() int { return len(c.ring) }

// Score calibrates x and then adds it to the history. NaN scores 0 and is not remembered.
func (c *Calibrator) Score(x float64) float64 {
	if math.IsNaN(x) {
		return 0
	}
	s := c.Peek(x)
	c.Add(x)
	return s
}

// Peek calibrates x without remembering it.
func (c *Calibrator) Peek(x float64) float64 {
	n := len(c.sorted)
	if n < c.cfg.MinCount || math.IsNaN(x) {
		return 0
	}
	ui := int(math.Ceil(c.cfg.TailQuantile*float64(n))) - 1
	ui = max(0, min(ui, n-1))
	u := c.sorted[ui]
	if x <= u {
		lo, _ := slices.BinarySearch(c.sorted, x)
		hi := lo
		for hi < n && c.sorted[hi] == x {
			hi++
		}
		return (float64(lo) + 0.5*float64(hi-lo)) / float64(n)
	}
	k, sum := 0, 0.0
	for _, h := range c.sorted[ui+1:] {
		if h > u {
			k++
			sum += h - u
		}
	}
	beta := 1e-12 + 1e-9*math.Abs(u)
	if k > 0 {
		beta = max(beta, sum/float64(k))
	}
	kk := max(float64(k), 0.5)
	s := 1 - kk/float64(n)*math.Exp(-(x-u)/beta)
	return min(max(s, 0), 1)
}

// Add remembers x (used for false-positive feedback: the value becomes part of normal).
// NaN and ±Inf are not remembered.
func (c *Calibrator) Add(x float64) {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return
	}
	if len(c.ring) < c.cfg.Window {
		c.ring = append(c.ring, x)
	} else {
		old := c.ring[c.pos]
		c.ring[c.pos] = x
		c.pos = (c.pos + 1) % c.cfg.Window
		i, _ := slices.BinarySearch(c.sorted, old)
		c.sorted = slices.Delete(c.sorted, i, i+1)
	}
	i, _ := slices.BinarySearch(c.sorted, x)
	c.sorted = slices.Insert(c.sorted, i, x)
}

const calibMagic = "VCAL"

// MarshalBinary writes the remembered scores oldest first.
func (c *Calibrator) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.Header(calibMagic, 1)
	ordered := make([]float64, 0, len(c.ring))
	if len(c.ring) == c.cfg.Window {
		ordered = append(append(ordered, c.ring[c.pos:]...), c.ring[:c.pos]...)
	} else {
		ordered = append(ordered, c.ring...)
	}
	w.F64s(ordered)
	return w.Bytes(), nil
}

// UnmarshalBinary restores a checkpoint written by a calibrator with the same Window or a
// smaller one. On error c is unchanged.
func (c *Calibrator) UnmarshalBinary(data []byte) error {
	r := wire.NewReader(data)
	r.Header(calibMagic, 1)
	xs := r.F64s("calibrator history", c.cfg.Window)
	if err := r.Done(); err != nil {
		return fmt.Errorf("%w: calibrator: %v", ErrCheckpoint, err)
	}
	for _, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("%w: calibrator history holds %v", ErrCheckpoint, x)
		}
	}
	fresh := &Calibrator{cfg: c.cfg}
	for _, x := range xs {
		fresh.Add(x)
	}
	*c = *fresh
	return nil
}
