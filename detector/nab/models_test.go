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

// TestCADPortScoresAsPublished runs the CAD OSE port over the corpus in NAB's configuration (the
// file's min and max, rest period = probationary length / 5): its standard score must be NAB's
// published contextOSE 69.9 (69.8996 in final_results.json).
func TestCADPortScoresAsPublished(t *testing.T) {
	if testing.Short() {
		t.Skip("runs CAD over 365,558 rows (about 15 s)")
	}
	c, _ := loadCorpus(t)
	scores, err := Run(c, func(f *File) (detector.MetricModel, error) {
		cfg := metric.DefaultCADConfig()
		cfg.Min, cfg.Max = f.Min(), f.Max()
		cfg.RestPeriod = int(float64(ProbationaryLength(len(f.Values))) / 5.0)
		return metric.NewCAD(cfg)
	})
	if err != nil {
		t.Fatal(err)
	}
	RoundLikeNAB(scores)
	want := []float64{69.89956896844828, 66.97713919047413, 73.18167250416667}
	for k, p := range Profiles() {
		res, err := Evaluate(c, scores, p)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("cad %s: %.4f (threshold %.6f), published %.4f", p.Name, res.Normalized, res.Threshold, want[k])
		// The port's scores are close to, not bit-identical with, the published run (its
		// low-FP figure is 0.7 below), so only the standard profile is held to 0.05.
		thr := map[string]float64{"standard": 0.7655273437500002, "reward_low_FP_rate": 0.7656372070312502, "reward_low_FN_rate": 0.7047851562500003}[p.Name]
		at, err := EvaluateAt(c, scores, p, thr)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("cad %s at the published threshold %.6f: %.4f", p.Name, thr, at.Normalized)
		if k == 0 && math.Abs(res.Normalized-want[k]) > 0.05 {
			t.Errorf("%s: %.4f, published %.4f", p.Name, res.Normalized, want[k])
		}
		if math.Abs(res.Normalized-want[k]) > 1.0 {
			t.Errorf("%s: %.4f, more than 1 point from the published %.4f", p.Name, res.Normalized, want[k])
		}
	}
}

// TestBlendScoresAboveCAD runs the strongest configuration (CAD 0.85 + expanding Gaussian 0.15,
// nabbench's "vigil") over the corpus: it must keep the standard score it reached, 70.49.
func TestBlendScoresAboveCAD(t *testing.T) {
	if testing.Short() {
		t.Skip("runs CAD over 365,558 rows (about 15 s)")
	}
	c, _ := loadCorpus(t)
	scores, err := Run(c, func(f *File) (detector.MetricModel, error) {
		cfg := metric.DefaultCADConfig()
		cfg.Min, cfg.Max = f.Min(), f.Max()
		cfg.RestPeriod = int(float64(ProbationaryLength(len(f.Values))) / 5.0)
		cm, err := metric.NewCAD(cfg)
		if err != nil {
			return nil, err
		}
		gcfg := metric.DefaultGaussianConfig()
		gcfg.Window = 0
		g, err := metric.NewGaussian(gcfg)
		if err != nil {
			return nil, err
		}
		return metric.NewBlend([]detector.MetricModel{cm, g}, []float64{0.85, 0.15})
	})
	if err != nil {
		t.Fatal(err)
	}
	RoundLikeNAB(scores)
	res, err := Evaluate(c, scores, Profiles()[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("blend standard: %.4f (threshold %.6f)", res.Normalized, res.Threshold)
	if res.Normalized < 70.45 {
		t.Errorf("standard %.4f, below the 70.49 measured when the configuration was chosen", res.Normalized)
	}
}
