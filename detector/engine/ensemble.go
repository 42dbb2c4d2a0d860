package engine

import (
	"fmt"

	"github.com/vigil-mesh/vigil/detector"
	"github.com/vigil-mesh/vigil/detector/internal/wire"
)

// Combine is how an Ensemble joins its members' calibrated scores.
type Combine string

const (
	// Max takes the highest calibrated score: any one member can raise an alert. With k
	// independent members about k times as many ordinary points pass a given threshold.
	Max Combine = "max"
	// Mean takes the weighted mean of the calibrated scores: a point must look unusual to
	// most of the weight to score high.
	Mean Combine = "mean"
)

// EnsembleConfig configures an Ensemble.
type EnsembleConfig struct {
	// Members names the member algorithms (for the catalogue; the Ensemble itself takes the
	// built models). At least 1, at most 16.
	Members []string
	// Combine is max (default) or mean.
	Combine Combine
	// Weights are the members' weights for mean, one per member, each > 0; empty = equal.
	Weights []float64
	// Calibrator maps each member's score through its own running empirical CDF and tail.
	Calibrator detector.CalibratorConfig
}

// DefaultEnsembleConfig returns Combine max and the default calibrator, with no members.
func DefaultEnsembleConfig() EnsembleConfig {
	return EnsembleConfig{Combine: Max, Calibrator: detector.DefaultCalibratorConfig()}
}

// Validate checks the config.
func (c EnsembleConfig) Validate() error {
	if len(c.Members) < 1 || len(c.Members) > 16 {
		return fmt.Errorf("ensemble: Members has %d names, want 1 to 16", len(c.Members))
	}
	if c.Combine != Max && c.Combine != Mean {
		return fmt.Errorf("ensemble: Combine %q is not max or mean", c.Combine)
	}
	if len(c.Weights) != 0 && len(c.Weights) != len(c.Members) {
		return fmt.Errorf("ensemble: Weights has %d values for %d members", len(c.Weights), len(c.Members))
	}
	for i, w := range c.Weights {
		if !(w > 0) {
			return fmt.Errorf("ensemble: Weights[%d] = %v, want > 0", i, w)
		}
	}
	if err := c.Calibrator.Validate(); err != nil {
		return fmt.Errorf("ensemble: Calibrator: %w", err)
	}
	return nil
}

// Ensemble is a detector.MetricModel made of several metric models over the same stream.
// Each member's score is mapped through the member's own detector.Calibrator (so a model
// whose scores crowd near 0.3 and one that is mostly 0 or 1 speak the same language: "how
// unusual is this for me"), and the calibrated scores are combined by max or weighted mean.
// Pure and deterministic when its members are.
type Ensemble struct {
	cfg     EnsembleConfig
	members []detector.MetricModel
	cals    []*detector.Calibrator
	weights []float64
	last    []float64 // each member's last score, for Feedback
}

var (
	_ detector.MetricModel   = (*Ensemble)(nil)
	_ detector.FeedbackModel = (*Ensemble)(nil)
)

// NewEnsemble combines members, one per cfg.Members name, in that order.
func NewEnsemble(cfg EnsembleConfig, members []detector.MetricModel) (*Ensemble, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(members) != len(cfg.Members) {
		return nil, fmt.Errorf("ensemble: %d models for %d member names", len(members), len(cfg.Members))
	}
	e := &Ensemble{cfg: cfg, members: members, weights: cfg.Weights, last: make([]float64, len(members))}
	if len(e.weights) == 0 {
		e.weights = make([]float64, len(members))
		for i := range e.weights {
			e.weights[i] = 1
		}
	}
	for range members {
		c, _ := detector.NewCalibrator(cfg.Calibrator)
		e.cals = append(e.cals, c)
	}
	return e, nil
}

// Algorithm returns "ensemble".
func (e *Ensemble) Algorithm() string { return "ensemble" }

// Observe feeds v at t to every member and returns the combined calibrated score.
func (e *Ensemble) Observe(t int64, v float64) float64 {
	out, wsum := 0.0, 0.0
	for i, m := range e.members {
		s := m.Observe(t, v)
		e.last[i] = s
		c := e.cals[i].Score(s)
		if e.cfg.Combine == Max {
			out = max(out, c)
		} else {
			out += e.weights[i] * c
			wsum += e.weights[i]
		}
	}
	if e.cfg.Combine == Mean {
		out /= wsum
	}
	return min(max(out, 0), 1)
}

// Feedback passes a false positive on to every member that takes feedback and adds each
// member's last score to its calibrator's history.
func (e *Ensemble) Feedback(t int64) {
	for i, m := range e.members {
		if f, ok := m.(detector.FeedbackModel); ok {
			f.Feedback(t)
		}
		e.cals[i].Add(e.last[i])
	}
}

// MarshalBinary writes each member's checkpoint and calibrator.
func (e *Ensemble) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.Header("VENS", 1)
	w.U32(uint32(len(e.members)))
	for i, m := range e.members {
		b, err := m.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("ensemble member %s: %w", e.cfg.Members[i], err)
		}
		w.String(e.cfg.Members[i])
		w.Blob(b)
		c, _ := e.cals[i].MarshalBinary()
		w.Blob(c)
		w.F64(e.last[i])
	}
	return w.Bytes(), nil
}

// maxMemberCheckpoint caps one member's checkpoint (16 MiB).
const maxMemberCheckpoint = 16 << 20

// UnmarshalBinary restores a checkpoint taken by an ensemble of the same members. Members are
// restored in order; on error some members may already hold the checkpoint's state, so the
// caller should discard the ensemble.
func (e *Ensemble) UnmarshalBinary(data []byte) error {
	r := wire.NewReader(data)
	r.Header("VENS", 1)
	if n := r.U32(); r.Err() == nil && int(n) != len(e.members) {
		return fmt.Errorf("%w: ensemble of %d members, checkpoint has %d", detector.ErrCheckpoint, len(e.members), n)
	}
	type part struct {
		model, cal []byte
		last       float64
	}
	parts := make([]part, len(e.members))
	for i := range e.members {
		name := r.String("ensemble member name", 64)
		if r.Err() == nil && name != e.cfg.Members[i] {
			return fmt.Errorf("%w: ensemble member %d is %q, checkpoint has %q", detector.ErrCheckpoint, i, e.cfg.Members[i], name)
		}
		parts[i] = part{r.Blob("ensemble member", maxMemberCheckpoint), r.Blob("ensemble calibrator", 1<<20), r.F64()}
	}
	if err := r.Done(); err != nil {
		return fmt.Errorf("%w: ensemble: %v", detector.ErrCheckpoint, err)
	}
	cals := make([]*detector.Calibrator, len(e.members))
	for i, p := range parts {
		cals[i], _ = detector.NewCalibrator(e.cfg.Calibrator)
		if err := cals[i].UnmarshalBinary(p.cal); err != nil {
			return err
		}
	}
	for i, p := range parts {
		if err := e.members[i].UnmarshalBinary(p.model); err != nil {
			return fmt.Errorf("ensemble member %s: %w", e.cfg.Members[i], err)
		}
		e.last[i] = p.last
	}
	e.cals = cals
	return nil
}
