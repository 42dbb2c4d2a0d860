package nab

import (
	"math"
	"testing"

	"github.com/vigil-mesh/vigil/detector"
	"github.com/vigil-mesh/vigil/detector/metric"
)

// TestGaussianPortMatchesPublishedScores runs metric.Gaussian in NAB's published configuration
// over the corpus: every row must equal NAB's windowedGaussian reference score, and the corpus
// must score NAB's published 39.6 / 20.9 / 47.4.
func TestGaussianPortMatchesPublishedScores(t *testing.T) {
	c, root := loadCorpus(t)
	ref := referenceScores(t, c, root, "windowedGaussian")
	scores, err := Run(c, func(*File) (detector.MetricModel, error) {
		return metric.NewGaussian(metric.NABGaussianConfig())
	})
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for i := range scores {
		for j := range scores[i] {
			// Reference files carry 12 significant digits.
			if math.Abs(scores[i][j]-ref[i][j]) > 1e-11 {
				if bad < 5 {
					t.Errorf("%s row %d: %.15g, reference %.15g", c.Files[i].Name, j, scores[i][j], ref[i][j])
				}
				bad++
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d rows differ from the reference", bad)
	}
	RoundLikeNAB(scores)
	want := []float64{39.649523496077585, 20.86798582474138, 47.4100271583046}
	for k, p := range Profiles() {
		res, err := Evaluate(c, scores, p)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("gaussian (NAB configuration) %s: %.4f, published %.4f", p.Name, res.Normalized, want[k])
		if math.Abs(res.Normalized-want[k]) > 1e-6 {
			t.Errorf("%s: %.4f, published %.4f", p.Name, res.Normalized, want[k])
		}
	}
}
