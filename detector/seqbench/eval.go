package seqbench

import (
	"fmt"
	"sort"
	"time"

	"github.com/vigil-mesh/vigil/detector"
)

// HDFSResult is the outcome of the reduced-normal-test protocol on HDFS.
type HDFSResult struct {
	Folds int
	// FP counts held-out normal sessions flagged, over all folds (each normal session is held
	// out exactly once); Normal is their number.
	FP, Normal int
	// TP is the mean, over folds, of abnormal sessions flagged; Abnormal is their number.
	TP       float64
	Abnormal int
	// Precision = TP/(TP+FP), Recall = TP/Abnormal, F1 their harmonic mean: "reduced normal
	// test" (4,855 normal sessions, not the published 553,366).
	Precision, Recall, F1 float64
	// FPR is FP/Normal. ProjectedPrecision is the precision the same FPR and recall would give
	// on the published test's mix (553,366 normal, 16,838 abnormal).
	FPR, ProjectedPrecision float64
	// Train is the total training time over the folds.
	Train time.Duration
}

func (r HDFSResult) String() string {
	return fmt.Sprintf("P=%.3f R=%.3f F1=%.3f FP=%d/%d FPR=%.4f projected P=%.3f train=%s",
		r.Precision, r.Recall, r.F1, r.FP, r.Normal, r.FPR, r.ProjectedPrecision, r.Train.Round(time.Millisecond))
}

// HDFS runs k-fold cross-validation over the normal sessions: fold i holds the sessions whose
// index is i mod k; a model trained on the other folds scores the held-out fold (false
// positives) and every abnormal session (recall). A session is flagged when its Max action
// score is at least threshold (0.5: DeepLog's top-g rule).
func HDFS(newModel func() (detector.SequenceModel, error), normal, abnormal [][]detector.Action, k int, threshold float64, withEnd bool) (HDFSResult, error) {
	res := HDFSResult{Folds: k, Normal: len(normal), Abnormal: len(abnormal)}
	var tpSum int
	for fold := 0; fold < k; fold++ {
		var train, held [][]detector.Action
		for i, s := range normal {
			if i%k == fold {
				held = append(held, s)
			} else {
				train = append(train, s)
			}
		}
		m, err := newModel()
		if err != nil {
			return res, err
		}
		start := time.Now()
		if err := m.Fit(train); err != nil {
			return res, err
		}
		res.Train += time.Since(start)
		for _, v := range ScoreSessions(m, held, Max, withEnd) {
			if v >= threshold {
				res.FP++
			}
		}
		for _, v := range ScoreSessions(m, abnormal, Max, withEnd) {
			if v >= threshold {
				tpSum++
			}
		}
	}
	res.TP = float64(tpSum) / float64(k)
	res.Recall = res.TP / float64(len(abnormal))
	if res.TP+float64(res.FP) > 0 {
		res.Precision = res.TP / (res.TP + float64(res.FP))
	}
	if res.Precision+res.Recall > 0 {
		res.F1 = 2 * res.Precision * res.Recall / (res.Precision + res.Recall)
	}
	res.FPR = float64(res.FP) / float64(len(normal))
	const pubNormal, pubAbnormal = 553366, 16838
	tp := res.Recall * pubAbnormal
	if tp+res.FPR*pubNormal > 0 {
		res.ProjectedPrecision = tp / (tp + res.FPR*pubNormal)
	}
	return res, nil
}

// ADFAResult is the outcome of the ADFA-LD protocol.
type ADFAResult struct {
	AUC       float64
	DR5       float64            // detection rate at 5% false-positive rate
	Family    map[string]float64 // AUC per attack family (against every validation trace)
	FamilyDR5 map[string]float64
	Train     time.Duration
	Actions   int // actions scored
	Score     time.Duration
}

// ADFARun trains a model on the training traces and scores every validation and attack trace,
// each session's score the aggregate agg of its action scores.
func ADFARun(m detector.SequenceModel, d *ADFA, agg Aggregate, withEnd bool) (ADFAResult, error) {
	start := time.Now()
	if err := m.Fit(d.Train); err != nil {
		return ADFAResult{}, err
	}
	train := time.Since(start)
	res := ADFAScore(m, d, agg, withEnd)
	res.Train = train
	return res, nil
}

// ADFAScore scores every validation and attack trace with a trained model (ADFARun without the
// training).
func ADFAScore(m detector.SequenceModel, d *ADFA, agg Aggregate, withEnd bool) ADFAResult {
	res, _ := ADFAScoreAll(m, d, agg, withEnd)
	return res
}

// ADFAScoreAll is ADFAScore that also returns every trace's score.
func ADFAScoreAll(m detector.SequenceModel, d *ADFA, agg Aggregate, withEnd bool) (ADFAResult, Scores) {
	sc := Scores{Attack: map[string][]float64{}}
	start := time.Now()
	sc.Normal = ScoreSessions(m, d.Validation, agg, withEnd)
	actions := 0
	for fam, traces := range d.Attack {
		sc.Attack[fam] = ScoreSessions(m, traces, agg, withEnd)
		for _, t := range traces {
			actions += len(t)
		}
	}
	for _, t := range d.Validation {
		actions += len(t)
	}
	elapsed := time.Since(start)
	res := sc.Result()
	res.Actions, res.Score = actions, elapsed
	return res, sc
}

// Scores holds one scorer's session scores on ADFA-LD: every validation (normal) trace and
// every attack trace by family, in the order of ADFA's slices.
type Scores struct {
	Normal []float64
	Attack map[string][]float64
}

// ScoreADFA scores every validation and attack trace with f.
func ScoreADFA(d *ADFA, f func([]detector.Action) float64) Scores {
	s := Scores{Attack: map[string][]float64{}}
	for _, t := range d.Validation {
		s.Normal = append(s.Normal, f(t))
	}
	for fam, traces := range d.Attack {
		for _, t := range traces {
			s.Attack[fam] = append(s.Attack[fam], f(t))
		}
	}
	return s
}

// Result computes ROC AUC overall and per family and the detection rate at 5% FPR (Train,
// Actions and Score are left zero).
func (s Scores) Result() ADFAResult {
	res := ADFAResult{Family: map[string]float64{}, FamilyDR5: map[string]float64{}}
	var pos []float64
	fams := make([]string, 0, len(s.Attack))
	for f := range s.Attack {
		fams = append(fams, f)
	}
	sort.Strings(fams) // a fixed order, so AUC's sort sees the same input every run
	for _, f := range fams {
		p := s.Attack[f]
		res.Family[f] = AUC(p, s.Normal)
		res.FamilyDR5[f], _ = DetectionAtFPR(p, s.Normal, 0.05)
		pos = append(pos, p...)
	}
	res.AUC = AUC(pos, s.Normal)
	res.DR5, _ = DetectionAtFPR(pos, s.Normal, 0.05)
	return res
}

// RankAverage combines scorers by the mean of each one's rank among all the scored traces
// (normal and attack together, ties sharing their mean rank). It uses no labels, but it ranks
// against the test traces themselves, so it is optimistic for a combination a detector
// could run, which can only rank against training sessions (ECDF).
func RankAverage(ss ...Scores) Scores {
	fams := make([]string, 0, len(ss[0].Attack))
	for f := range ss[0].Attack {
		fams = append(fams, f)
	}
	sort.Strings(fams)
	sum := make([]float64, len(ss[0].Normal))
	for _, f := range fams {
		sum = append(sum, make([]float64, len(ss[0].Attack[f]))...)
	}
	for _, s := range ss {
		flat := append([]float64(nil), s.Normal...)
		for _, f := range fams {
			flat = append(flat, s.Attack[f]...)
		}
		for i, r := range midRanks(flat) {
			sum[i] += r / float64(len(ss))
		}
	}
	out := Scores{Normal: sum[:len(ss[0].Normal)], Attack: map[string][]float64{}}
	off := len(ss[0].Normal)
	for _, f := range fams {
		n := len(ss[0].Attack[f])
		out.Attack[f] = sum[off : off+n]
		off += n
	}
	return out
}

// midRanks returns each value's rank in [0,1): (its 0-based position in ascending order, ties
// averaged) / n.
func midRanks(v []float64) []float64 {
	idx := make([]int, len(v))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return v[idx[a]] < v[idx[b]] })
	r := make([]float64, len(v))
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && v[idx[j]] == v[idx[i]] {
			j++
		}
		for k := i; k < j; k++ {
			r[idx[k]] = float64(i+j-1) / 2 / float64(len(v))
		}
		i = j
	}
	return r
}

// ECDF returns the mid-rank empirical distribution function of ref: the fraction of ref below
// x plus half the fraction equal to it.
func ECDF(ref []float64) func(float64) float64 {
	r := append([]float64(nil), ref...)
	sort.Float64s(r)
	return func(x float64) float64 {
		lo := sort.SearchFloat64s(r, x)
		hi := lo
		for hi < len(r) && r[hi] == x {
			hi++
		}
		return (float64(lo) + 0.5*float64(hi-lo)) / float64(len(r))
	}
}

// Map applies f to every score.
func (s Scores) Map(f func(float64) float64) Scores {
	out := Scores{Attack: map[string][]float64{}}
	for _, v := range s.Normal {
		out.Normal = append(out.Normal, f(v))
	}
	for fam, vs := range s.Attack {
		for _, v := range vs {
			out.Attack[fam] = append(out.Attack[fam], f(v))
		}
	}
	return out
}

// MeanOf averages scorers trace by trace.
func MeanOf(ss ...Scores) Scores {
	out := ss[0].Map(func(float64) float64 { return 0 })
	for _, s := range ss {
		for i, v := range s.Normal {
			out.Normal[i] += v / float64(len(ss))
		}
		for fam, vs := range s.Attack {
			for i, v := range vs {
				out.Attack[fam][i] += v / float64(len(ss))
			}
		}
	}
	return out
}
