package sequence

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"

	"github.com/vigil-mesh/vigil/detector"
)

// LSTMConfig configures an LSTM model. The first group of fields fixes the network's shape
// (a checkpoint restores only into a model with the same shape); the second only training.
type LSTMConfig struct {
	// Hidden is the number of units per LSTM layer. 1..1024. Default 32.
	Hidden int
	// Layers is the number of stacked LSTM layers. 1..4. Default 1.
	Layers int
	// TopG is DeepLog's g: an action is a candidate when fewer than TopG actions have a higher
	// predicted probability. 1..1024. Default 9.
	TopG int
	// MaxVocab caps the number of distinct actions the first Fit may see. 1..65536. Default 4096.
	MaxVocab int

	// BPTT is the truncation length of back-propagation through time, in actions: a session is
	// trained in chunks this long, the state carried from one chunk to the next. 1..4096.
	// Default 20.
	BPTT int
	// Epochs is the number of passes over the distinct training sessions per Fit. 1..10000.
	// Default 10.
	Epochs int
	// BatchSize is the number of distinct sessions per Adam step. 1..65536. Default 16.
	BatchSize int
	// LearnRate is Adam's step size. 0 < LearnRate ≤ 1. Default 0.01.
	LearnRate float64
	// ClipNorm caps the gradient's global L2 norm before each step. > 0. Default 5.
	ClipNorm float64
	// Seed makes training deterministic: the same Seed, Workers and data give the same weights,
	// bit for bit, on the same platform.
	Seed uint64
	// Workers is the number of goroutines computing a batch's gradient in training (scoring
	// uses none). 1..64. Default 1. The result depends on Seed and Workers, not on scheduling.
	Workers int
	// FeedbackSteps is the number of Adam steps Feedback takes on a session. 1..10000. Default 5.
	FeedbackSteps int
}

// DefaultLSTMConfig returns the defaults documented on LSTMConfig.
func DefaultLSTMConfig() LSTMConfig {
	return LSTMConfig{
		Hidden: 32, Layers: 1, TopG: 9, MaxVocab: 4096,
		BPTT: 20, Epochs: 10, BatchSize: 16, LearnRate: 0.01, ClipNorm: 5, Seed: 1, Workers: 1,
		FeedbackSteps: 5,
	}
}

// Validate checks every field, naming the first one that is wrong.
func (c LSTMConfig) Validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("%w: %s=%v, want %s", ErrConfig, field, v, want)
	}
	switch {
	case c.Hidden < 1 || c.Hidden > 1024:
		return bad("Hidden", c.Hidden, "1..1024")
	case c.Layers < 1 || c.Layers > 4:
		return bad("Layers", c.Layers, "1..4")
	case c.TopG < 1 || c.TopG > 1024:
		return bad("TopG", c.TopG, "1..1024")
	case c.MaxVocab < 1 || c.MaxVocab > maxCheckpointVocab:
		return bad("MaxVocab", c.MaxVocab, "1..65536")
	case c.BPTT < 1 || c.BPTT > 4096:
		return bad("BPTT", c.BPTT, "1..4096")
	case c.Epochs < 1 || c.Epochs > 10000:
		return bad("Epochs", c.Epochs, "1..10000")
	case c.BatchSize < 1 || c.BatchSize > 65536:
		return bad("BatchSize", c.BatchSize, "1..65536")
	case !(c.LearnRate > 0 && c.LearnRate <= 1):
		return bad("LearnRate", c.LearnRate, "0 < LearnRate ≤ 1")
	case !(c.ClipNorm > 0 && !math.IsInf(c.ClipNorm, 0)):
		return bad("ClipNorm", c.ClipNorm, "> 0 and finite")
	case c.Workers < 1 || c.Workers > 64:
		return bad("Workers", c.Workers, "1..64")
	case c.FeedbackSteps < 1 || c.FeedbackSteps > 10000:
		return bad("FeedbackSteps", c.FeedbackSteps, "1..10000")
	}
	return nil
}

// LSTM is a DeepLog-style next-action model: the session's previous action (one-hot, the
// session start as its own token) feeds Layers stacked LSTM layers, and a softmax layer over
// the vocabulary predicts the next action. Scores follow the top-g rule (score.go) on the
// predicted logits.
//
// The vocabulary is fixed by the first Fit that sees any action: actions first seen later are
// "never seen" (score 1) until a new model is trained. Later Fit and Feedback calls fine-tune
// the weights.
type LSTM struct {
	cfg   LSTMConfig
	voc   vocab
	k     int // vocabulary size; tokens: 0..k-1 actions, k unknown, k+1 session start
	fits  uint64
	steps uint64 // Adam steps taken

	p, m, v []float32 // parameters and Adam moments, one flat layout (see offsets)
	lay     []lstmLayer
	wy, by  []float32

	// scoring scratch, shared by sessions (calls are serialised per model)
	logits, top, gates []float32
}

type lstmLayer struct {
	wx, wh, b []float32 // wx: layer 0 [(k+2)][4H] rows per token; others [4H][H]
}

var _ detector.SequenceModel = (*LSTM)(nil)

// NewLSTM returns an untrained model, or the Validate error. An untrained model scores every
// action 1.
func NewLSTM(cfg LSTMConfig) (*LSTM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &LSTM{cfg: cfg, top: make([]float32, 0, cfg.TopG)}, nil
}

// Algorithm returns "lstm".
func (m *LSTM) Algorithm() string { return "lstm" }

// LearnsOnline returns false: the LSTM learns only in Fit and Feedback.
func (m *LSTM) LearnsOnline() bool { return false }

// Vocabulary returns the number of actions the model knows.
func (m *LSTM) Vocabulary() int { return m.k }

// Params returns the number of trained parameters.
func (m *LSTM) Params() int { return len(m.p) }

// numParams lays the parameters out for vocabulary size k and returns their count.
func (c LSTMConfig) numParams(k int) int {
	h := c.Hidden
	n := (k+2)*4*h + 4*h*h + 4*h
	n += (c.Layers - 1) * (4*h*h + 4*h*h + 4*h)
	return n + (k+1)*h + k + 1
}

// alloc sizes the model for vocabulary voc and slices the parameter arrays.
func (m *LSTM) alloc(voc vocab) {
	m.voc, m.k = voc, voc.size()
	n := m.cfg.numParams(m.k)
	m.p, m.m, m.v = make([]float32, n), make([]float32, n), make([]float32, n)
	m.lay, m.wy, m.by = sliceParams(m.cfg, m.k, m.p)
	m.logits = make([]float32, m.k+1)
	m.gates = make([]float32, 4*m.cfg.Hidden)
}

func sliceParams(c LSTMConfig, k int, p []float32) ([]lstmLayer, []float32, []float32) {
	h := c.Hidden
	take := func(n int) []float32 { s := p[:n:n]; p = p[n:]; return s }
	lay := make([]lstmLayer, c.Layers)
	for l := range lay {
		if l == 0 {
			lay[l].wx = take((k + 2) * 4 * h)
		} else {
			lay[l].wx = take(4 * h * h)
		}
		lay[l].wh = take(4 * h * h)
		lay[l].b = take(4 * h)
	}
	wy := take((k + 1) * h)
	by := take(k + 1)
	return lay, wy, by
}

// init draws the initial weights from the seeded source: uniform ±1/√Hidden, forget-gate
// biases 1.
func (m *LSTM) init(r *rand.Rand) {
	s := 1 / math.Sqrt(float64(m.cfg.Hidden))
	for i := range m.p {
		m.p[i] = float32((2*r.Float64() - 1) * s)
	}
	h := m.cfg.Hidden
	for l := range m.lay {
		b := m.lay[l].b
		for j := range b {
			b[j] = 0
		}
		for j := h; j < 2*h; j++ {
			b[j] = 1
		}
	}
	for j := range m.by {
		m.by[j] = 0
	}
}

// token is the input token for an action.
func (m *LSTM) token(a detector.Action) int {
	if i := m.voc.lookup(a); i != unknown {
		return int(i)
	}
	return m.k
}

// cell runs one step of layer l in place: gates gets the activations (4H), c and h the new
// state. tok is the input token (layer 0) and x the input vector (other layers). hPrev may be
// h and cPrev may be c.
func (m *LSTM) cell(l, tok int, x, hPrev, cPrev, gates, c, tc, h []float32) {
	H := m.cfg.Hidden
	L := &m.lay[l]
	gates = gates[:4*H]
	if l == 0 {
		row := L.wx[tok*4*H : (tok+1)*4*H]
		for j := range gates {
			gates[j] = L.b[j] + row[j]
		}
	} else {
		copy(gates, L.b)
		matvecAdd(L.wx, x, gates)
	}
	matvecAdd(L.wh, hPrev, gates)
	for j := 0; j < H; j++ {
		i := sigmoid(gates[j])
		f := sigmoid(gates[H+j])
		g := tanh(gates[2*H+j])
		o := sigmoid(gates[3*H+j])
		gates[j], gates[H+j], gates[2*H+j], gates[3*H+j] = i, f, g, o
		cj := f*cPrev[j] + i*g
		c[j] = cj
		t := tanh(cj)
		if tc != nil {
			tc[j] = t
		}
		h[j] = o * t
	}
}

// output computes the logits of the next action from the top layer's h.
func (m *LSTM) output(h, logits []float32) {
	H := m.cfg.Hidden
	copy(logits, m.by)
	matvecAdd(m.wy[:len(logits)*H], h, logits)
}

// Start begins a session. Its state is 2×Layers×Hidden float32 plus the previous token.
func (m *LSTM) Start() detector.Session {
	H, L := m.cfg.Hidden, m.cfg.Layers
	st := make([]float32, 2*L*H)
	return &lstmSession{m: m, st: st, prev: m.k + 1}
}

type lstmSession struct {
	m    *LSTM
	st   []float32 // h for each layer, then c for each layer
	prev int       // previous token (session start: k+1)
}

// Observe runs one LSTM step on the previous action, scores a against the prediction, and
// keeps a as the next input. It allocates nothing.
func (s *lstmSession) Observe(a detector.Action) float64 {
	m := s.m
	if m.k == 0 {
		return 1
	}
	s.step()
	idx := m.voc.lookup(a)
	if idx == unknown {
		s.prev = m.k
		return 1
	}
	s.prev = int(idx)
	L, H := m.cfg.Layers, m.cfg.Hidden
	m.output(s.st[(L-1)*H:L*H], m.logits)
	return bandScore(m.logits, int(idx), m.cfg.TopG, m.top)
}

// End scores the end of the session (the model predicts it like an action: class k). The
// session must not be used after End.
func (s *lstmSession) End() float64 {
	m := s.m
	if m.k == 0 {
		return 1
	}
	s.step()
	L, H := m.cfg.Layers, m.cfg.Hidden
	m.output(s.st[(L-1)*H:L*H], m.logits)
	return bandScore(m.logits, m.k, m.cfg.TopG, m.top)
}

// step advances every layer on the previous token.
func (s *lstmSession) step() {
	m := s.m
	H, L := m.cfg.Hidden, m.cfg.Layers
	if s.prev > m.k+1 { // started before a restore to a smaller vocabulary
		s.prev = m.k
	}
	gates := m.gates
	for l := 0; l < L; l++ {
		h := s.st[l*H : (l+1)*H]
		c := s.st[(L+l)*H : (L+l+1)*H]
		var x []float32
		if l > 0 {
			x = s.st[(l-1)*H : l*H]
		}
		m.cell(l, s.prev, x, h, c, gates, c, nil, h)
	}
}

// Fit trains on sessions for Epochs passes (identical sessions are trained once, weighted by
// their count). The first Fit with any action fixes the vocabulary and initialises the weights
// from Seed. Training is deterministic for Seed and Workers.
func (m *LSTM) Fit(sessions [][]detector.Action) error {
	if m.k == 0 {
		voc, err := buildVocab(sessions, m.cfg.MaxVocab)
		if err != nil {
			return err
		}
		if voc.size() == 0 {
			return nil
		}
		m.alloc(voc)
		m.init(newRand(m.cfg.Seed))
	}
	uniq, w := dedup(sessions)
	r := rand.New(rand.NewPCG(m.cfg.Seed, m.fits+1))
	m.fits++
	t := newTrainer(m)
	order := make([]int, len(uniq))
	for e := 0; e < m.cfg.Epochs; e++ {
		for i := range order {
			order[i] = i
		}
		r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for b := 0; b < len(order); b += m.cfg.BatchSize {
			idx := order[b:min(b+m.cfg.BatchSize, len(order))]
			batch := make([][]detector.Action, len(idx))
			bw := make([]float32, len(idx))
			for i, j := range idx {
				batch[i], bw[i] = uniq[j], w[j]
			}
			t.step(batch, bw)
		}
	}
	return nil
}

// Feedback fine-tunes the model on one session judged normal (a false positive): DeepLog's
// feedback. It takes FeedbackSteps Adam steps on that session. Actions outside the vocabulary
// stay unknown.
func (m *LSTM) Feedback(session []detector.Action) error {
	if m.k == 0 {
		return m.Fit([][]detector.Action{session})
	}
	t := newTrainer(m)
	for i := 0; i < m.cfg.FeedbackSteps; i++ {
		t.step([][]detector.Action{session}, []float32{1})
	}
	return nil
}

// trainer holds the per-worker workspaces of one training run.
type trainer struct {
	m  *LSTM
	ws []*workspace
}

func newTrainer(m *LSTM) *trainer {
	t := &trainer{m: m}
	for i := 0; i < m.cfg.Workers; i++ {
		t.ws = append(t.ws, newWorkspace(m))
	}
	return t
}

// step computes the batch's gradient (each worker a contiguous share of the batch, summed in
// worker order) and takes one clipped Adam step.
func (t *trainer) step(batch [][]detector.Action, w []float32) {
	m := t.m
	nw := min(len(t.ws), len(batch))
	var wg sync.WaitGroup
	for i := 0; i < nw; i++ {
		lo, hi := i*len(batch)/nw, (i+1)*len(batch)/nw
		ws := t.ws[i]
		ws.reset()
		run := func() {
			for j := lo; j < hi; j++ {
				ws.session(batch[j], w[j])
			}
		}
		if nw == 1 {
			run()
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); run() }()
	}
	wg.Wait()
	g := t.ws[0].grad
	var denom float64 = t.ws[0].denom
	for i := 1; i < nw; i++ {
		axpy(1, t.ws[i].grad, g)
		denom += t.ws[i].denom
	}
	if denom == 0 {
		return
	}
	var norm float64
	for _, x := range g {
		norm += float64(x) * float64(x)
	}
	norm = math.Sqrt(norm) / denom
	scale := 1 / denom
	if norm > m.cfg.ClipNorm {
		scale *= m.cfg.ClipNorm / norm
	}
	const b1, b2, eps = 0.9, 0.999, 1e-8
	m.steps++
	lr := m.cfg.LearnRate * math.Sqrt(1-math.Pow(b2, float64(m.steps))) / (1 - math.Pow(b1, float64(m.steps)))
	for i, gi := range g {
		gg := float64(gi) * scale
		mi := b1*float64(m.m[i]) + (1-b1)*gg
		vi := b2*float64(m.v[i]) + (1-b2)*gg*gg
		m.m[i], m.v[i] = float32(mi), float32(vi)
		m.p[i] -= float32(lr * mi / (math.Sqrt(vi) + eps))
	}
}

// workspace is one worker's buffers for truncated BPTT over a chunk of BPTT steps.
type workspace struct {
	m      *LSTM
	grad   []float32
	gl     []lstmLayer // grad slices per layer
	gwy    []float32
	gby    []float32
	denom  float64
	toks   []int
	tgts   []int
	h, c   [][]float32 // per layer (T+1)×H: index 0 is the state carried in
	gates  [][]float32 // per layer T×4H activations
	tc     [][]float32 // per layer T×H tanh(c)
	dAbove []float32   // T×H gradient reaching the current layer's h from above
	dBelow []float32   // T×H gradient for the layer below's h
	dh, dc []float32   // H
	dz     []float32   // 4H
	prob   []float64   // k
	logits []float32   // k
}

func newWorkspace(m *LSTM) *workspace {
	T, H, L, k := m.cfg.BPTT, m.cfg.Hidden, m.cfg.Layers, m.k
	ws := &workspace{m: m, grad: make([]float32, len(m.p))}
	ws.gl, ws.gwy, ws.gby = sliceParams(m.cfg, k, ws.grad)
	ws.toks, ws.tgts = make([]int, T), make([]int, T)
	for l := 0; l < L; l++ {
		ws.h = append(ws.h, make([]float32, (T+1)*H))
		ws.c = append(ws.c, make([]float32, (T+1)*H))
		ws.gates = append(ws.gates, make([]float32, T*4*H))
		ws.tc = append(ws.tc, make([]float32, T*H))
	}
	ws.dAbove, ws.dBelow = make([]float32, T*H), make([]float32, T*H)
	ws.dh, ws.dc, ws.dz = make([]float32, H), make([]float32, H), make([]float32, 4*H)
	ws.prob, ws.logits = make([]float64, k+1), make([]float32, k+1)
	return ws
}

func (ws *workspace) reset() {
	clear(ws.grad)
	ws.denom = 0
}

// session accumulates the gradient of weight × the cross-entropy of predicting every action of
// s from the actions before it.
func (ws *workspace) session(s []detector.Action, weight float32) {
	m := ws.m
	T, H := m.cfg.BPTT, m.cfg.Hidden
	for l := range ws.h {
		clear(ws.h[l][:H])
		clear(ws.c[l][:H])
	}
	prev := m.k + 1
	// Targets: every action, then the session's end (class k).
	for start := 0; start <= len(s); start += T {
		n := min(T, len(s)+1-start)
		for t := 0; t < n; t++ {
			ws.toks[t] = prev
			if start+t == len(s) {
				ws.tgts[t] = m.k
				continue
			}
			idx := m.voc.lookup(s[start+t])
			if idx == unknown {
				ws.tgts[t] = -1
				prev = m.k
			} else {
				ws.tgts[t] = int(idx)
				prev = int(idx)
			}
		}
		ws.chunk(n, weight)
		for l := range ws.h {
			copy(ws.h[l][:H], ws.h[l][n*H:(n+1)*H])
			copy(ws.c[l][:H], ws.c[l][n*H:(n+1)*H])
		}
	}
}

// chunk runs forward and backward over n steps from the carried-in state.
func (ws *workspace) chunk(n int, weight float32) {
	m := ws.m
	H, L, k := m.cfg.Hidden, m.cfg.Layers, m.k
	for t := 0; t < n; t++ {
		for l := 0; l < L; l++ {
			var x []float32
			if l > 0 {
				x = ws.h[l-1][(t+1)*H : (t+2)*H]
			}
			m.cell(l, ws.toks[t], x, ws.h[l][t*H:(t+1)*H], ws.c[l][t*H:(t+1)*H],
				ws.gates[l][t*4*H:(t+1)*4*H], ws.c[l][(t+1)*H:(t+2)*H], ws.tc[l][t*H:(t+1)*H], ws.h[l][(t+1)*H:(t+2)*H])
		}
	}
	// Output layer: softmax cross-entropy; dAbove gets dLoss/dh of the top layer.
	clear(ws.dAbove[:n*H])
	top := ws.h[L-1]
	for t := 0; t < n; t++ {
		tg := ws.tgts[t]
		if tg < 0 {
			continue
		}
		ws.denom += float64(weight)
		h := top[(t+1)*H : (t+2)*H]
		m.output(h, ws.logits)
		mx := ws.logits[0]
		for _, v := range ws.logits {
			mx = max(mx, v)
		}
		var sum float64
		for j, v := range ws.logits {
			e := math.Exp(float64(v - mx))
			ws.prob[j] = e
			sum += e
		}
		d := ws.dAbove[t*H : (t+1)*H]
		for j := 0; j <= k; j++ {
			g := ws.prob[j] / sum
			if j == tg {
				g--
			}
			gj := float32(g) * weight
			if gj == 0 {
				continue
			}
			ws.gby[j] += gj
			axpy(gj, h, ws.gwy[j*H:(j+1)*H])
			axpy(gj, m.wy[j*H:(j+1)*H], d)
		}
	}
	// LSTM layers, top down, each backwards in time.
	for l := L - 1; l >= 0; l-- {
		lay, gl := &m.lay[l], &ws.gl[l]
		clear(ws.dh)
		clear(ws.dc)
		if l > 0 {
			clear(ws.dBelow[:n*H])
		}
		for t := n - 1; t >= 0; t-- {
			gates := ws.gates[l][t*4*H : (t+1)*4*H]
			tc := ws.tc[l][t*H : (t+1)*H]
			cPrev := ws.c[l][t*H : (t+1)*H]
			hPrev := ws.h[l][t*H : (t+1)*H]
			dAbove := ws.dAbove[t*H : (t+1)*H]
			dz := ws.dz
			for j := 0; j < H; j++ {
				i, f, g, o := gates[j], gates[H+j], gates[2*H+j], gates[3*H+j]
				dh := dAbove[j] + ws.dh[j]
				do := dh * tc[j]
				dc := dh*o*(1-tc[j]*tc[j]) + ws.dc[j]
				dz[j] = dc * g * i * (1 - i)
				dz[H+j] = dc * cPrev[j] * f * (1 - f)
				dz[2*H+j] = dc * i * (1 - g*g)
				dz[3*H+j] = do * o * (1 - o)
				ws.dc[j] = dc * f
			}
			clear(ws.dh)
			for j := 0; j < 4*H; j++ {
				d := dz[j]
				if d == 0 {
					continue
				}
				gl.b[j] += d
				axpy(d, hPrev, gl.wh[j*H:(j+1)*H])
				axpy(d, lay.wh[j*H:(j+1)*H], ws.dh)
			}
			if l == 0 {
				tok := ws.toks[t]
				axpy(1, dz, gl.wx[tok*4*H:(tok+1)*4*H])
			} else {
				x := ws.h[l-1][(t+1)*H : (t+2)*H]
				dx := ws.dBelow[t*H : (t+1)*H]
				for j := 0; j < 4*H; j++ {
					d := dz[j]
					if d == 0 {
						continue
					}
					axpy(d, x, gl.wx[j*H:(j+1)*H])
					axpy(d, lay.wx[j*H:(j+1)*H], dx)
				}
			}
		}
		ws.dAbove, ws.dBelow = ws.dBelow, ws.dAbove
	}
}

const (
	lstmMagic   = "VGLS"
	lstmVersion = 1
)

// MarshalBinary writes the shape, the vocabulary, the weights and the optimiser's state (so
// Feedback after a restore continues exactly as it would have).
func (m *LSTM) MarshalBinary() ([]byte, error) {
	e := &enc{b: make([]byte, 0, 64+12*len(m.p)+4*m.k)}
	e.header(lstmMagic, lstmVersion)
	e.u32(uint32(m.cfg.Hidden))
	e.u32(uint32(m.cfg.Layers))
	e.u32(uint32(m.cfg.TopG))
	e.u64(m.fits)
	e.u64(m.steps)
	m.voc.encode(e)
	e.f32s(m.p)
	e.f32s(m.m)
	e.f32s(m.v)
	return e.b, nil
}

// UnmarshalBinary restores a checkpoint written by a model with the same Hidden, Layers and
// TopG. It refuses truncated, corrupt or mismatched input and then leaves the model unchanged.
func (m *LSTM) UnmarshalBinary(b []byte) error {
	d := &dec{b: b}
	d.header(lstmMagic, lstmVersion)
	d.match("Hidden", uint64(d.u32("Hidden")), uint64(m.cfg.Hidden))
	d.match("Layers", uint64(d.u32("Layers")), uint64(m.cfg.Layers))
	d.match("TopG", uint64(d.u32("TopG")), uint64(m.cfg.TopG))
	fits, steps := d.u64("fits"), d.u64("steps")
	voc := decodeVocab(d)
	if d.err == nil && voc.size() > m.cfg.MaxVocab {
		d.fail("vocabulary", "%d actions over MaxVocab=%d", voc.size(), m.cfg.MaxVocab)
	}
	if d.err != nil {
		return d.err
	}
	n := 0
	if voc.size() > 0 {
		n = m.cfg.numParams(voc.size())
	}
	// Every parameter array takes 4 bytes per value: check the size before allocating.
	if !d.need("weights", 3*(4+4*n)) {
		return d.err
	}
	nm := &LSTM{cfg: m.cfg, top: m.top, fits: fits, steps: steps}
	if voc.size() > 0 {
		nm.alloc(voc)
	}
	d.f32sInto("weights", nm.p)
	d.f32sInto("adam first moment", nm.m)
	d.f32sInto("adam second moment", nm.v)
	for i, x := range nm.v {
		if d.err == nil && x < 0 {
			d.fail("adam second moment", "value %d is negative", i)
		}
	}
	if err := d.end(); err != nil {
		return err
	}
	*m = *nm
	return nil
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)) }
