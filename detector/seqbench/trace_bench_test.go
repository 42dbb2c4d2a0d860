package seqbench

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/vigil-mesh/vigil/detector"
	"github.com/vigil-mesh/vigil/detector/sequence"
)

// TestADFATraceBench measures trace-level scorers on ADFA-LD under the same protocol as
// TestADFABench (train on Training_Data_Master only; score every validation and attack trace):
// k-nearest neighbours over bags of n-grams, a local-outlier ratio, the fraction of unseen
// n-grams, sequence covering (the cover model, and covering by single training sessions), and
// combinations of these with the sequence models. Reduced mode: the configuration fixed before
// any attack trace was scored, cover, and their combinations with the 5-gram; full mode
// (VIGIL_BENCH_SEQ=1): every configuration in docs/benchmarks.md. Each row must reach a floor,
// so a broken scorer fails the test.
func TestADFATraceBench(t *testing.T) {
	dir := dataDir(t)
	d, err := ReadADFA(filepath.Join(dir, "adfa-ld", "ADFA-LD.zip"))
	if err != nil {
		t.Fatal(err)
	}
	fams := make([]string, 0, len(d.Attack))
	for f := range d.Attack {
		fams = append(fams, f)
	}
	sort.Strings(fams)
	var b strings.Builder
	b.WriteString("\n| scorer | AUC | detection at 5% FPR |")
	for _, f := range fams {
		b.WriteString(" AUC " + f + " |")
	}
	b.WriteString("\n|---|---|---|" + strings.Repeat("---|", len(fams)) + "\n")
	all := map[string]Scores{}
	emit := func(name string, s Scores, floor float64) {
		all[name] = s
		res := s.Result()
		fmt.Fprintf(&b, "| %s | %.3f | %.3f |", name, res.AUC, res.DR5)
		for _, f := range fams {
			fmt.Fprintf(&b, " %.3f |", res.Family[f])
		}
		b.WriteString("\n")
		if res.AUC < floor {
			t.Errorf("%s: AUC %.3f below the floor %.2f", name, res.AUC, floor)
		}
	}

	// The configuration fixed before any attack trace was scored.
	apriori := BagConfig{Orders: []int{1, 2, 3}, Weight: "log", IDF: true, Unseen: true}
	bags := []BagConfig{apriori}
	ks := []int{1}
	if full {
		bags = []BagConfig{
			{[]int{1}, "count", false, true},
			{[]int{1}, "log", true, true},
			{[]int{1, 2}, "log", true, true},
			apriori,
			{[]int{1, 2, 3}, "count", true, true},
			{[]int{1, 2, 3}, "binary", true, true},
			{[]int{1, 2, 3}, "log", false, true},
			{[]int{1, 2, 3}, "log", true, false},
			{[]int{2}, "log", true, true},
			{[]int{3}, "log", true, true},
			{[]int{1, 2, 3, 4}, "log", true, true},
		}
		ks = []int{1, 3, 5}
	}
	knns := map[string]*KNN{}
	for _, c := range bags {
		m, err := NewKNN(c, d.Train)
		if err != nil {
			t.Fatal(err)
		}
		knns[c.String()] = m
		for _, k := range ks {
			emit(fmt.Sprintf("kNN k=%d, %s", k, c), ScoreADFA(d, func(s []detector.Action) float64 { return m.Distance(s, k) }), 0.65)
		}
	}
	lofs := []BagConfig{apriori}
	if full {
		lofs = []BagConfig{{[]int{1, 2, 3}, "count", true, true}, {[]int{1, 2, 3}, "log", false, true}, apriori, {[]int{1}, "log", true, true}}
	}
	for _, c := range lofs {
		m := knns[c.String()]
		emit("LOF, "+c.String(), ScoreADFA(d, m.LOF), 0.65)
	}
	ns := []int{4}
	if full {
		ns = []int{2, 3, 4, 5, 6, 8}
	}
	for _, n := range ns {
		for _, distinct := range []bool{true, false} {
			what := "occurrences"
			if distinct {
				what = "distinct"
			}
			emit(fmt.Sprintf("unseen %d-grams, fraction of %s", n, what), ScoreADFA(d, UnseenFraction(d.Train, n, distinct)), 0.55)
		}
	}

	cover, _ := sequence.NewCover(sequence.DefaultCoverConfig())
	if err := cover.Fit(d.Train); err != nil {
		t.Fatal(err)
	}
	emit("cover (the model: covering rate with start and end, calibrated)", ScoreADFA(d, cover.Score), 0.83)
	if full {
		// Covering by single training sessions: the best rate among the M nearest by the
		// a-priori kNN (M = all would cost 833 coverings per trace), and covering by those M
		// together.
		per := make([]*sequence.Cover, len(d.Train))
		for i, s := range d.Train {
			per[i], _ = sequence.NewCover(sequence.DefaultCoverConfig())
			if err := per[i].Fit([][]detector.Action{s}); err != nil {
				t.Fatal(err)
			}
		}
		nearest := func(s []detector.Action, m int) []int {
			dist := knns[apriori.String()].distances(s)
			idx := make([]int, len(dist))
			for i := range idx {
				idx[i] = i
			}
			slices.SortStableFunc(idx, func(a, b int) int {
				switch {
				case dist[a] < dist[b]:
					return -1
				case dist[a] > dist[b]:
					return 1
				}
				return 0
			})
			return idx[:m]
		}
		for _, m := range []int{1, 5, 20, 50} {
			emit(fmt.Sprintf("cover by one training session, best of the %d nearest", m), ScoreADFA(d, func(s []detector.Action) float64 {
				best := 1.0
				for _, j := range nearest(s, m) {
					best = min(best, per[j].Rate(s))
				}
				return best
			}), 0.65)
		}
		for _, m := range []int{5, 20} {
			emit(fmt.Sprintf("cover by the %d nearest training sessions together", m), ScoreADFA(d, func(s []detector.Action) float64 {
				var sub [][]detector.Action
				for _, j := range nearest(s, m) {
					sub = append(sub, d.Train[j])
				}
				c, _ := sequence.NewCover(sequence.DefaultCoverConfig())
				_ = c.Fit(sub)
				return c.Rate(s)
			}), 0.65)
		}
	}

	// Sequence models, from TestADFABench when it ran in this process.
	seq := func(spec modelSpec) Scores {
		if s, ok := adfaSeqScores[spec.name]; ok {
			return s
		}
		m, err := spec.make()
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Fit(d.Train); err != nil {
			t.Fatal(err)
		}
		_, s := ADFAScoreAll(m, d, Mean, true)
		adfaSeqScores[spec.name] = s
		return s
	}
	ng5 := ngramSpec(5)
	all["ngram5"] = seq(ng5)
	if full {
		all["lstm30"] = seq(lstmBatchSpec(32, 1, 30, 8))
	}

	// The combination fixed in advance: the mean of the a-priori kNN's and the 5-gram's scores,
	// each calibrated against out-of-fold training sessions (leave-one-out for the kNN, 5 folds
	// for the 5-gram) — a combination a detector could run.
	knnOOF := knns[apriori.String()].LeaveOneOut()
	var ngOOF []float64
	for f := 0; f < 5; f++ {
		var train, held [][]detector.Action
		for i, s := range d.Train {
			if i%5 == f {
				held = append(held, s)
			} else {
				train = append(train, s)
			}
		}
		m, _ := ng5.make()
		if err := m.Fit(train); err != nil {
			t.Fatal(err)
		}
		ngOOF = append(ngOOF, ScoreSessions(m, held, Mean, true)...)
	}
	knnName := "kNN k=1, " + apriori.String()
	emit("mean of calibrated scores: kNN k=1 "+apriori.String()+" + ngram N=5 (fixed in advance)",
		MeanOf(all[knnName].Map(ECDF(knnOOF)), all["ngram5"].Map(ECDF(ngOOF))), 0.7)

	// Rank averages over the scored traces (optimistic for what a deployable combination
	// of the same scorers can do).
	combos := [][]string{
		{knnName, "ngram5"},
		{"cover", "ngram5"},
	}
	if full {
		combos = [][]string{
			{knnName, "ngram5"},
			{"kNN k=1, n=1,2,3 count idf", "ngram5"},
			{"kNN k=1, n=1,2,3 log", "ngram5"},
			{"kNN k=1, n=1 log idf", "ngram5"},
			{"LOF, n=1,2,3 count idf", "ngram5"},
			{"LOF, n=1,2,3 log", "ngram5"},
			{"unseen 5-grams, fraction of distinct", "ngram5"},
			{"unseen 5-grams, fraction of occurrences", "ngram5"},
			{"kNN k=1, n=1,2,3 count idf", "unseen 5-grams, fraction of distinct", "ngram5"},
			{"kNN k=1, n=1,2,3 log", "kNN k=1, n=1 log idf", "ngram5"},
			{"cover", "ngram5"},
			{"cover", "lstm30"},
			{"cover", "ngram5", "lstm30"},
			{"cover", "kNN k=1, n=1,2,3 count idf"},
			{"cover", "kNN k=1, n=1,2,3 log"},
			{"cover", "kNN k=1, n=1 log idf"},
			{"cover", "LOF, n=1,2,3 count idf"},
			{"cover", "LOF, n=1,2,3 log"},
			{"cover", "unseen 4-grams, fraction of occurrences"},
			{"cover", "lstm30", "kNN k=1, n=1,2,3 count idf"},
			{"cover", "lstm30", "kNN k=1, n=1,2,3 log"},
			{"cover", "lstm30", "kNN k=1, n=1 log idf"},
			{"lstm30", "kNN k=1, n=1,2,3 count idf"},
			{"lstm30", "kNN k=1, n=1,2,3 log"},
		}
	}
	for _, c := range combos {
		var ss []Scores
		for _, name := range c {
			if name == "cover" {
				name = "cover (the model: covering rate with start and end, calibrated)"
			}
			s, ok := all[name]
			if !ok {
				t.Fatalf("combination %v: no scorer %q", c, name)
			}
			ss = append(ss, s)
		}
		emit("rank average: "+strings.Join(c, " + "), RankAverage(ss...), 0.7)
	}
	t.Log(b.String())
}
