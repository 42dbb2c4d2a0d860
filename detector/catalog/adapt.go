package catalog

import "github.com/vigil-mesh/vigil/detector"

// vectorMetric runs a vector model of dimension 1 as a metric model, so a policy can put hst or
// rrcf (with shingling, rrcf scores the shape of a stream's last values) on one metric, or in an
// ensemble.
type vectorMetric struct {
	m detector.VectorModel
	x [1]float64
}

func (v *vectorMetric) Algorithm() string                 { return v.m.Algorithm() }
func (v *vectorMetric) MarshalBinary() ([]byte, error)    { return v.m.MarshalBinary() }
func (v *vectorMetric) UnmarshalBinary(data []byte) error { return v.m.UnmarshalBinary(data) }

func (v *vectorMetric) Observe(t int64, x float64) float64 {
	v.x[0] = x
	return v.m.Observe(t, v.x[:])
}

// Feedback passes a false positive on if the vector model takes feedback.
func (v *vectorMetric) Feedback(t int64) {
	if f, ok := v.m.(detector.FeedbackModel); ok {
		f.Feedback(t)
	}
}

var (
	_ detector.MetricModel   = (*vectorMetric)(nil)
	_ detector.FeedbackModel = (*vectorMetric)(nil)
)
