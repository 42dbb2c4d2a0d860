package seqbench

import (
	"math"
	"strings"
	"testing"

	"github.com/vigil-mesh/vigil/detector"
)

// denseCosine is the reference: the cosine distance of two count vectors over the 1- and
// 2-grams, built naively as maps of strings.
func denseCosine(a, b []detector.Action) float64 {
	vec := func(s []detector.Action) map[string]float64 {
		m := map[string]float64{}
		for i := range s {
			m[string(rune(s[i]))]++
			if i+1 < len(s) {
				m[string(rune(s[i]))+","+string(rune(s[i+1]))]++
			}
		}
		return m
	}
	va, vb := vec(a), vec(b)
	dot, na, nb := 0.0, 0.0, 0.0
	for k, x := range va {
		dot += x * vb[k]
		na += x * x
	}
	for _, x := range vb {
		nb += x * x
	}
	return 1 - dot/math.Sqrt(na*nb)
}

func TestKNNDistance(t *testing.T) {
	train := [][]detector.Action{{1, 2, 3, 1, 2}, {4, 5, 4, 5}, {1, 2, 3, 1, 2}}
	m, err := NewKNN(BagConfig{Orders: []int{1, 2}, Weight: "count", Unseen: true}, train)
	if err != nil {
		t.Fatal(err)
	}
	if d := m.Distance([]detector.Action{4, 5, 4, 5}, 1); d > 1e-12 {
		t.Errorf("a training session: distance %v", d)
	}
	if d := m.Distance([]detector.Action{7, 8, 9}, 1); d != 1 {
		t.Errorf("only unseen n-grams: distance %v, want 1", d)
	}
	// Against the dense reference: with every n-gram of q known, the nearest is train[0].
	q := []detector.Action{1, 2, 1, 2, 3}
	if got, want := m.Distance(q, 1), denseCosine(q, train[0]); math.Abs(got-want) > 1e-12 {
		t.Errorf("distance %v, reference %v", got, want)
	}
	// k=2 averages the two nearest (both copies of train[0])
	if got, want := m.Distance(q, 2), denseCosine(q, train[0]); math.Abs(got-want) > 1e-12 {
		t.Errorf("k=2: %v, want %v", got, want)
	}
	// An unseen n-gram counted in the norm moves the session away; dropped, it does not.
	q2 := []detector.Action{4, 5, 4, 5, 9}
	dropped, _ := NewKNN(BagConfig{Orders: []int{1, 2}, Weight: "count"}, train)
	if a, b := m.Distance(q2, 1), dropped.Distance(q2, 1); !(a > b) || b > 1e-12 {
		t.Errorf("unseen counted %v, dropped %v: want counted > dropped = 0", a, b)
	}
	// The duplicated training session's nearest other one is its copy.
	if oof := m.LeaveOneOut(); oof[0] > 1e-12 || oof[2] > 1e-12 || oof[1] < 0.5 {
		t.Errorf("leave-one-out distances %v", oof)
	}
	// LOF: the copy's own distance is 0, so a session at distance x from it scores x/0.01.
	if got := m.LOF(train[1]); got != 0 {
		t.Errorf("LOF of a training session %v", got)
	}
}

func TestKNNWeights(t *testing.T) {
	train := [][]detector.Action{{1, 1, 1, 2}, {1, 3}}
	for _, c := range []struct {
		cfg  BagConfig
		want float64 // distance of {1, 2} to train[0] (the nearest)
	}{
		// counts 1:3, 2:1 vs 1:1, 2:1 → 1 − 4/(√10·√2)
		{BagConfig{Orders: []int{1}, Weight: "count", Unseen: true}, 1 - 4/math.Sqrt(20)},
		// binary: identical sets
		{BagConfig{Orders: []int{1}, Weight: "binary", Unseen: true}, 0},
		// log: 1+ln 3 and 1 vs 1 and 1
		{BagConfig{Orders: []int{1}, Weight: "log", Unseen: true}, 1 - (2+math.Log(3))/(math.Sqrt(math.Pow(1+math.Log(3), 2)+1)*math.Sqrt(2))},
	} {
		m, err := NewKNN(c.cfg, train)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Distance([]detector.Action{1, 2}, 1); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s: %v, want %v", c.cfg, got, c.want)
		}
	}
	// idf: action 1 is in both training sessions (idf ln(3/3)+1 = 1), 2 in one (ln(3/2)+1)
	m, _ := NewKNN(BagConfig{Orders: []int{1}, Weight: "binary", IDF: true, Unseen: true}, train)
	w2 := math.Log(1.5) + 1
	want := 1 - (1+w2*w2)/(math.Sqrt(1+w2*w2)*math.Sqrt(1+w2*w2))
	if got := m.Distance([]detector.Action{1, 2}, 1); math.Abs(got-want) > 1e-12 {
		t.Errorf("idf: %v, want %v", got, want)
	}
}

func TestBagConfigRefused(t *testing.T) {
	for want, c := range map[string]BagConfig{
		"Orders is empty": {Weight: "log"},
		"holds 9":         {Orders: []int{1, 9}, Weight: "log"},
		`Weight "tf"`:     {Orders: []int{1}, Weight: "tf"},
	} {
		if _, err := NewKNN(c, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want %q", c, err, want)
		}
	}
}

func TestUnseenFraction(t *testing.T) {
	train := [][]detector.Action{{1, 2, 3}}
	s := []detector.Action{1, 2, 9, 1, 2} // bigrams 12, 29, 91, 12: 29 and 91 unseen
	if got := UnseenFraction(train, 2, true)(s); got != 2.0/3 {
		t.Errorf("distinct: %v, want 2/3", got)
	}
	if got := UnseenFraction(train, 2, false)(s); got != 2.0/4 {
		t.Errorf("occurrences: %v, want 1/2", got)
	}
	if got := UnseenFraction(train, 4, false)(s[:3]); got != 0 {
		t.Errorf("shorter than n: %v", got)
	}
}

func TestCombinations(t *testing.T) {
	a := Scores{Normal: []float64{1, 2, 3}, Attack: map[string][]float64{"x": {4}, "y": {0}}}
	b := Scores{Normal: []float64{30, 20, 10}, Attack: map[string][]float64{"x": {40}, "y": {50}}}
	r := RankAverage(a, b)
	// a's mid-ranks /5: 1→0.2, 2→0.4, 3→0.6, 4→0.8, 0→0; b's: 30→0.4, 20→0.2, 10→0, 40→0.6, 50→0.8
	want := []float64{0.3, 0.3, 0.3}
	for i, v := range r.Normal {
		if math.Abs(v-want[i]) > 1e-12 {
			t.Fatalf("rank average normal %v, want %v", r.Normal, want)
		}
	}
	if math.Abs(r.Attack["x"][0]-0.7) > 1e-12 || math.Abs(r.Attack["y"][0]-0.4) > 1e-12 {
		t.Fatalf("rank average attack %v", r.Attack)
	}
	res := r.Result()
	if res.Family["x"] != 1 || res.Family["y"] != 1 || res.AUC != 1 {
		t.Fatalf("result %+v", res)
	}
	e := ECDF([]float64{1, 2, 2, 3})
	for x, want := range map[float64]float64{0: 0, 1: 0.125, 2: 0.5, 2.5: 0.75, 9: 1} {
		if got := e(x); got != want {
			t.Errorf("ECDF(%v) = %v, want %v", x, got, want)
		}
	}
	m := MeanOf(a, a.Map(func(v float64) float64 { return 3 * v }))
	if m.Normal[1] != 4 || m.Attack["x"][0] != 8 {
		t.Fatalf("mean %+v", m)
	}
	if Last([]float64{0.1, 0.7}) != 0.7 || Last(nil) != 0 {
		t.Fatal("Last")
	}
}
