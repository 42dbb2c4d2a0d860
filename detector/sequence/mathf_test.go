package sequence

import (
	"math"
	"testing"
)

// TestExpfAccuracy compares expf, sigmoid and tanh with the float64 library over their range.
func TestExpfAccuracy(t *testing.T) {
	worst := 0.0
	for x := -87.0; x <= 88; x += 0.001 {
		got, want := float64(expf(float32(x))), math.Exp(float64(float32(x)))
		if rel := math.Abs(got-want) / want; rel > worst {
			worst = rel
		}
	}
	if worst > 5e-7 {
		t.Fatalf("expf relative error %g", worst)
	}
	for x := -30.0; x <= 30; x += 0.001 {
		if d := math.Abs(float64(sigmoid(float32(x))) - 1/(1+math.Exp(-x))); d > 2e-7 {
			t.Fatalf("sigmoid(%v) off by %g", x, d)
		}
		if d := math.Abs(float64(tanh(float32(x))) - math.Tanh(x)); d > 5e-7 {
			t.Fatalf("tanh(%v) off by %g", x, d)
		}
	}
	if !math.IsNaN(float64(expf(float32(math.NaN())))) || expf(1000) != expf(88) || expf(-1000) != expf(-87) {
		t.Fatal("expf edge cases")
	}
	t.Logf("expf worst relative error %g", worst)
}
