package seqbench

import (
	"fmt"
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
	res := ADFAResult{Family: map[string]float64{}, FamilyDR5: map[string]float64{}}
	start := time.Now()
	neg := ScoreSessions(m, d.Validation, agg, withEnd)
	var pos []float64
	for fam, traces := range d.Attack {
		p := ScoreSessions(m, traces, agg, withEnd)
		res.Family[fam] = AUC(p, neg)
		res.FamilyDR5[fam], _ = DetectionAtFPR(p, neg, 0.05)
		pos = append(pos, p...)
		for _, t := range traces {
			res.Actions += len(t)
		}
	}
	for _, t := range d.Validation {
		res.Actions += len(t)
	}
	res.Score = time.Since(start)
	res.AUC = AUC(pos, neg)
	res.DR5, _ = DetectionAtFPR(pos, neg, 0.05)
	return res
}
