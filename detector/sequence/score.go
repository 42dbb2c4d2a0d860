package sequence

import (
	"math"

	"github.com/vigil-mesh/vigil/detector"
)

// The score of an action, shared by every model in this package, is DeepLog's top-g rule with
// the likelihood inside each band:
//
//   - the model ranks every known action by how likely it is next (its logit, or its smoothed
//     count); r is the number of candidates strictly more likely than the observed action a;
//   - a is a candidate when r < g. Then score = 0.5·(1 − p(a)/p(top)), in [0, 0.5): 0 for the
//     most likely action, approaching 0.5 as a becomes much less likely than the top candidate;
//   - otherwise score = 1 − 0.5·p(a)/p(g-th), in (0.5, 1]: just over 0.5 when a is nearly as likely
//     as the last candidate, approaching 1 when it is far less likely;
//   - an action outside the vocabulary (never seen in training, or id 0) scores 1.
//
// So "score ≥ 0.5" is exactly DeepLog's rule "not among the top-g candidates", and the score is
// monotone in the action's likelihood within each band, which gives ROC curves their resolution.

// bandScore scores index a among logits (log-likelihoods up to a shared constant) with the
// top-g rule. top is a scratch buffer of at least g entries (used only when a is outside the
// top g).
func bandScore(logits []float32, a int, g int, top []float32) float64 {
	la := logits[a]
	mx := la
	r := 0
	for _, l := range logits {
		if l > la {
			r++
			if l > mx {
				mx = l
			}
		}
	}
	var s float64
	if r < g {
		s = 0.5 * (1 - math.Exp(float64(la-mx)))
	} else {
		lg := kthLargest(logits, g, top)
		s = 1 - 0.5*math.Exp(float64(la-lg))
	}
	if !(s >= 0 && s <= 1) { // NaN or infinite logits (only from absurd weights): say unusual
		return 1
	}
	return s
}

// kthLargest returns the k-th largest value of v (1-based), using top[:k] as scratch.
func kthLargest(v []float32, k int, top []float32) float32 {
	top = top[:0]
	for _, x := range v {
		if len(top) < k {
			// insert keeping top sorted descending
			top = append(top, x)
			for i := len(top) - 1; i > 0 && top[i] > top[i-1]; i-- {
				top[i], top[i-1] = top[i-1], top[i]
			}
			continue
		}
		if x <= top[k-1] {
			continue
		}
		top[k-1] = x
		for i := k - 1; i > 0 && top[i] > top[i-1]; i-- {
			top[i], top[i-1] = top[i-1], top[i]
		}
	}
	return top[len(top)-1]
}

// Ender is implemented by the sessions of every model in this package: End scores the end of
// the session the way Observe scores an action (a session that stops where normal sessions
// never stop scores high). The detector.Session contract has no end-of-session call; a caller
// that sees sessions end can type-assert for Ender.
type Ender interface {
	End() float64
}

// The sessions of this package satisfy detector.Ender (the same interface).
var (
	_ detector.Ender = (*ngSession)(nil)
	_ detector.Ender = (*lstmSession)(nil)
)
