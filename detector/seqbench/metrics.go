package seqbench

import (
	"math"
	"sort"

	"github.com/vigil-mesh/vigil/detector"
	"github.com/vigil-mesh/vigil/detector/sequence"
)

// Aggregate turns the action scores of one session into the session's score.
type Aggregate func(scores []float64) float64

// Max is the session's highest action score: with threshold 0.5 it is DeepLog's rule (a session
// is anomalous when any action falls outside the top-g candidates).
func Max(s []float64) float64 {
	m := 0.0
	for _, v := range s {
		m = math.Max(m, v)
	}
	return m
}

// Mean is the mean action score.
func Mean(s []float64) float64 {
	if len(s) == 0 {
		return 0
	}
	t := 0.0
	for _, v := range s {
		t += v
	}
	return t / float64(len(s))
}

// ScoreSessions scores each session with a fresh Session of m and aggregates its action scores
// (and, when withEnd is set and the session is a sequence.Ender, the score of its end). Identical sessions are scored once (a model that does not learn online scores a session the
// same way each time); online models must not be scored through this function.
func ScoreSessions(m detector.SequenceModel, sessions [][]detector.Action, agg Aggregate, withEnd bool) []float64 {
	memo := map[string]float64{}
	out := make([]float64, len(sessions))
	var buf []float64
	key := make([]byte, 0, 1024)
	for i, s := range sessions {
		key = key[:0]
		for _, a := range s {
			key = append(key, byte(a), byte(a>>8), byte(a>>16), byte(a>>24))
		}
		if v, ok := memo[string(key)]; ok {
			out[i] = v
			continue
		}
		sess := m.Start()
		buf = buf[:0]
		for _, a := range s {
			buf = append(buf, sess.Observe(a))
		}
		if e, ok := sess.(sequence.Ender); ok && withEnd {
			buf = append(buf, e.End())
		}
		out[i] = agg(buf)
		memo[string(key)] = out[i]
	}
	return out
}

// AUC is the area under the ROC curve of scores with positives (anomalous) pos and negatives
// neg: the probability that a random positive scores above a random negative, ties counting
// one half.
func AUC(pos, neg []float64) float64 {
	if len(pos) == 0 || len(neg) == 0 {
		return math.NaN()
	}
	type item struct {
		v   float64
		pos bool
	}
	all := make([]item, 0, len(pos)+len(neg))
	for _, v := range pos {
		all = append(all, item{v, true})
	}
	for _, v := range neg {
		all = append(all, item{v, false})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v < all[j].v })
	// Mann–Whitney U with average ranks for ties.
	var rankSum float64
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		avg := float64(i+j+1) / 2 // ranks i+1..j
		for k := i; k < j; k++ {
			if all[k].pos {
				rankSum += avg
			}
		}
		i = j
	}
	np, nn := float64(len(pos)), float64(len(neg))
	return (rankSum - np*(np+1)/2) / (np * nn)
}

// DetectionAtFPR returns the fraction of pos scoring strictly above the threshold that lets at
// most fpr of neg through (the smallest threshold with at most ⌊fpr·len(neg)⌋ negatives above
// it), and that threshold.
func DetectionAtFPR(pos, neg []float64, fpr float64) (rate, threshold float64) {
	n := append([]float64(nil), neg...)
	sort.Sort(sort.Reverse(sort.Float64Slice(n)))
	allowed := int(math.Floor(fpr * float64(len(n))))
	// threshold: the (allowed+1)-th largest negative; negatives strictly above it ≤ allowed.
	threshold = n[min(allowed, len(n)-1)]
	hit := 0
	for _, v := range pos {
		if v > threshold {
			hit++
		}
	}
	return float64(hit) / float64(len(pos)), threshold
}

// PRF returns precision, recall and F1 from counts.
func PRF(tp, fp, fn int) (p, r, f1 float64) {
	if tp+fp > 0 {
		p = float64(tp) / float64(tp+fp)
	}
	if tp+fn > 0 {
		r = float64(tp) / float64(tp+fn)
	}
	if p+r > 0 {
		f1 = 2 * p * r / (p + r)
	}
	return
}

// Last is the last score: with the end scored, the end's score (the verdict of a model that
// judges whole sessions, such as sequence.Cover).
func Last(s []float64) float64 {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}
