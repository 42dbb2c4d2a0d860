package rules

import (
	"fmt"
	"math"
	"time"

	"github.com/vigil-mesh/vigil/detector"
	"github.com/vigil-mesh/vigil/detector/internal/wire"
)

// MarshalBinary checkpoints an agent's rule progress.
func (st *State) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.Header("VRST", 1)
	w.U32(uint32(len(st.rs)))
	for _, r := range st.rs {
		w.I64(r.since)
		w.Bool(r.holding)
		w.Bool(r.violated)
		w.I64(r.head)
		for _, b := range r.buckets {
			w.F64(b)
		}
	}
	return w.Bytes(), nil
}

// UnmarshalBinary restores a checkpoint taken under a Set with the same number of rules.
// On error st is unchanged.
func (st *State) UnmarshalBinary(data []byte) error {
	r := wire.NewReader(data)
	r.Header("VRST", 1)
	n := r.U32()
	if r.Err() == nil && int(n) != len(st.rs) {
		return fmt.Errorf("%w: rule state holds %d rules, the policy has %d", detector.ErrCheckpoint, n, len(st.rs))
	}
	rs := make([]ruleState, len(st.rs))
	for i := range rs {
		rs[i].since = r.I64()
		rs[i].holding = r.Bool()
		rs[i].violated = r.Bool()
		rs[i].head = r.I64()
		for j := range rs[i].buckets {
			rs[i].buckets[j] = r.F64()
		}
	}
	if err := r.Done(); err != nil {
		return fmt.Errorf("%w: rule state: %v", detector.ErrCheckpoint, err)
	}
	st.rs = rs
	return nil
}

// ModelConfig configures the "threshold" metric model: one gauge rule over one stream.
type ModelConfig struct {
	// Threshold is the policy string ("80%", "0.5", "64MiB", "500ms"); rates are not
	// allowed here (use a rate rule). Required.
	Threshold string
	// For is how long the value must stay above the threshold; default 0 (at once).
	For time.Duration
}

// DefaultModelConfig returns an empty threshold (which Validate refuses: it must be given).
func DefaultModelConfig() ModelConfig { return ModelConfig{} }

// Validate checks the config.
func (c ModelConfig) Validate() error {
	th, err := ParseThreshold(c.Threshold)
	if err != nil {
		return fmt.Errorf("threshold model: Threshold: %w", err)
	}
	if th.Kind == Rate {
		return fmt.Errorf("threshold model: Threshold %q is a rate; a metric model compares values", c.Threshold)
	}
	if c.For < 0 {
		return fmt.Errorf("threshold model: For %v is negative", c.For)
	}
	return nil
}

// Model is a detector.MetricModel that scores 1 while its stream has stayed above the threshold
// for at least For, else 0.
type Model struct {
	set *Set
	st  *State
}

var _ detector.MetricModel = (*Model)(nil)

// NewModel builds a threshold model.
func NewModel(cfg ModelConfig) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	th, _ := ParseThreshold(cfg.Threshold)
	set, err := NewSet([]Rule{{Metric: "value", Threshold: th, For: cfg.For}})
	if err != nil {
		return nil, err
	}
	return &Model{set: set, st: set.NewState()}, nil
}

// Algorithm returns "threshold".
func (m *Model) Algorithm() string { return "threshold" }

// Observe scores v at t.
func (m *Model) Observe(t int64, v float64) float64 {
	if math.IsNaN(v) {
		return 0
	}
	var buf [1]Result
	return m.set.Observe(m.st, t, "value", v, buf[:0])[0].Score
}

// MarshalBinary checkpoints the model.
func (m *Model) MarshalBinary() ([]byte, error) { return m.st.MarshalBinary() }

// UnmarshalBinary restores a checkpoint.
func (m *Model) UnmarshalBinary(data []byte) error { return m.st.UnmarshalBinary(data) }
