package nab

import (
	"math"
	"testing"
)

// synthetic builds a 1000-row file (probation 150 rows) with one window [400, 499].
func synthetic() *Corpus {
	f := File{Name: "x/synthetic.csv", Times: make([]int64, 1000), Values: make([]float64, 1000),
		Windows: []Window{{Start: 400, End: 499}}}
	for i := range f.Times {
		f.Times[i] = int64(i) * 1e9
	}
	return &Corpus{Files: []File{f}}
}

func TestScorerRules(t *testing.T) {
	p := Profiles()[0]
	cases := []struct {
		name   string
		detect []int
		want   float64
		counts Counts
	}{
		{"nothing detected costs fnWeight", nil, -1, Counts{TN: 750, FN: 100}},
		{"earliest point of the window earns tpWeight", []int{400}, 1, Counts{TP: 1, TN: 750, FN: 99}},
		{"only the earliest detection counts", []int{400, 450, 499}, 1, Counts{TP: 3, TN: 750, FN: 97}},
		{"last point of the window earns little", []int{499}, scaledSigmoid(-0.01) / scaledSigmoid(-1), Counts{TP: 1, TN: 750, FN: 99}},
		{"detection in probation is ignored", []int{10}, -1, Counts{TN: 750, FN: 100}},
		{"FP before any window costs fpWeight in full", []int{200}, -1 - 0.11, Counts{TN: 749, FP: 1, FN: 100}},
		{"FP far past the window costs fpWeight", []int{900}, -1 - 0.11, Counts{TN: 749, FP: 1, FN: 100}},
		{"FP right after the window costs almost nothing", []int{500}, -1 + 0.11*scaledSigmoid(1.0/99), Counts{TN: 749, FP: 1, FN: 100}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := synthetic()
			s := make([]float64, 1000)
			for _, i := range tc.detect {
				s[i] = 1
			}
			res, err := EvaluateAt(c, [][]float64{s}, p, 0.5)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(res.Raw-tc.want) > 1e-12 {
				t.Errorf("raw %v, want %v", res.Raw, tc.want)
			}
			if res.Files[0].Counts != tc.counts {
				t.Errorf("counts %+v, want %+v", res.Files[0].Counts, tc.counts)
			}
			if res.Null != -1 || res.Perfect != 1 {
				t.Errorf("null %v perfect %v, want -1 and 1", res.Null, res.Perfect)
			}
		})
	}
}

func TestOptimiserPicksBestThreshold(t *testing.T) {
	c := synthetic()
	s := make([]float64, 1000)
	s[200] = 0.9 // a false positive scoring higher than the true one
	s[410] = 0.8
	res, err := Evaluate(c, [][]float64{s}, Profiles()[0])
	if err != nil {
		t.Fatal(err)
	}
	// Threshold 0.8 takes both (score 1·S(410) − 0.11), 0.9 takes only the FP, above takes none.
	want := scaledSigmoid(-90.0/100)/scaledSigmoid(-1) - 0.11
	if res.Threshold != 0.8 || math.Abs(res.Raw-want) > 1e-12 {
		t.Errorf("threshold %v raw %v, want 0.8 and %v", res.Threshold, res.Raw, want)
	}
	if math.Abs(res.Normalized-100*(want+1)/2) > 1e-9 {
		t.Errorf("normalised %v", res.Normalized)
	}
}

func TestEvaluateRefusesBadInput(t *testing.T) {
	c := synthetic()
	if _, err := Evaluate(c, [][]float64{make([]float64, 999)}, Profiles()[0]); err == nil {
		t.Error("short score series accepted")
	}
	if _, err := Evaluate(c, nil, Profiles()[0]); err == nil {
		t.Error("missing score series accepted")
	}
	s := make([]float64, 1000)
	s[3] = math.NaN()
	if _, err := Evaluate(c, [][]float64{s}, Profiles()[0]); err == nil {
		t.Error("NaN score accepted")
	}
	if _, err := Evaluate(c, [][]float64{make([]float64, 1000)}, Profile{Name: "x", TPWeight: 0}); err == nil {
		t.Error("TPWeight 0 accepted")
	}
}

func TestProbationaryLength(t *testing.T) {
	for n, want := range map[int]int{100: 15, 1000: 150, 4032: 604, 5000: 750, 22695: 750} {
		if got := ProbationaryLength(n); got != want {
			t.Errorf("ProbationaryLength(%d) = %d, want %d", n, got, want)
		}
	}
}
