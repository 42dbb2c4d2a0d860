package sequence

import (
	"math"
	"testing"

	"github.com/vigil-mesh/vigil/detector"
)

// seqLoss returns the summed cross-entropy of s under the model, run the way training runs it
// (chunks of BPTT, state carried across).
func seqLoss(m *LSTM, s []detector.Action) float64 {
	ws := newWorkspace(m)
	sess := m.Start().(*lstmSession)
	var total float64
	targets := make([]int, 0, len(s)+1)
	for _, a := range s {
		targets = append(targets, int(m.voc.lookup(a)))
	}
	targets = append(targets, m.k) // the session's end
	for _, idx := range targets {
		// replicate Observe's step, then the softmax
		H, L := m.cfg.Hidden, m.cfg.Layers
		gates := m.gates
		for l := 0; l < L; l++ {
			h := sess.st[l*H : (l+1)*H]
			c := sess.st[(L+l)*H : (L+l+1)*H]
			var x []float32
			if l > 0 {
				x = sess.st[(l-1)*H : l*H]
			}
			m.cell(l, sess.prev, x, h, c, gates, c, nil, h)
		}
		sess.prev = idx
		m.output(sess.st[(L-1)*H:L*H], ws.logits)
		mx := ws.logits[0]
		for _, v := range ws.logits {
			mx = max(mx, v)
		}
		var sum float64
		for _, v := range ws.logits {
			sum += math.Exp(float64(v - mx))
		}
		total += -(float64(ws.logits[idx]-mx) - math.Log(sum))
	}
	return total
}

// TestLSTMGradient compares back-propagation with central differences, for one and two layers,
// with BPTT longer than the session (so the analytic gradient is the full one).
func TestLSTMGradient(t *testing.T) {
	for _, layers := range []int{1, 2} {
		cfg := DefaultLSTMConfig()
		cfg.Hidden, cfg.Layers, cfg.BPTT, cfg.Epochs = 5, layers, 64, 1
		m, err := NewLSTM(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s := []detector.Action{3, 1, 4, 1, 5, 9, 2, 6, 5, 3}
		voc, _ := buildVocab([][]detector.Action{s}, 100)
		m.alloc(voc)
		m.init(newRand(7))
		ws := newWorkspace(m)
		ws.reset()
		ws.session(s, 1)
		checked := 0
		for i := 0; i < len(m.p); i += 3 {
			orig := m.p[i]
			const eps = 1e-2
			m.p[i] = orig + eps
			lp := seqLoss(m, s)
			m.p[i] = orig - eps
			lm := seqLoss(m, s)
			m.p[i] = orig
			num := (lp - lm) / (2 * eps)
			an := float64(ws.grad[i])
			if math.Abs(num-an) > 1e-4+1e-2*math.Abs(num) {
				t.Errorf("layers=%d param %d: analytic %.5f numeric %.5f", layers, i, an, num)
			}
			checked++
		}
		t.Logf("layers=%d: %d of %d parameters checked", layers, checked, len(m.p))
	}
}
