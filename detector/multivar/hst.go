package multivar

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"

	"github.com/vigil-mesh/vigil/detector"
	"github.com/vigil-mesh/vigil/detector/internal/wire"
)

// HSTConfig configures streaming half-space trees.
type HSTConfig struct {
	// Dim is the length of every observed vector. Required; range [1, 256].
	Dim int
	// Trees is the number of half-space trees. Default 16; range [1, 256].
	Trees int
	// Depth is each tree's depth (a tree has 2^(Depth+1)−1 nodes). Default 6; range [1, 12].
	Depth int
	// Window is the number of observations per reference window, and the length of the
	// bootstrap from which per-feature bounds are learned. Default 256; range [16, 65535].
	Window int
	// SizeLimit is the fraction of Window below which a node's mass is too small to descend
	// past when scoring (the paper's sizeLimit = 0.1·ψ). Default 0.1; range (0, 1).
	SizeLimit float64
	// Seed fixes the random half-spaces. Same seed and shape → same trees.
	Seed uint64
	// Calibrator maps the raw mass score into [0,1].
	Calibrator detector.CalibratorConfig
}

// DefaultHSTConfig returns Trees 16, Depth 6, Window 256, SizeLimit 0.1, Seed 1 and the
// default calibrator, for vectors of length dim.
func DefaultHSTConfig(dim int) HSTConfig {
	return HSTConfig{Dim: dim, Trees: 16, Depth: 6, Window: 256, SizeLimit: 0.1, Seed: 1,
		Calibrator: detector.DefaultCalibratorConfig()}
}

// Validate checks every field, naming the one that is wrong.
func (c HSTConfig) Validate() error {
	switch {
	case c.Dim < 1 || c.Dim > 256:
		return fmt.Errorf("hst: Dim %d out of range [1, 256]", c.Dim)
	case c.Trees < 1 || c.Trees > 256:
		return fmt.Errorf("hst: Trees %d out of range [1, 256]", c.Trees)
	case c.Depth < 1 || c.Depth > 12:
		return fmt.Errorf("hst: Depth %d out of range [1, 12]", c.Depth)
	case c.Window < 16 || c.Window > 65535:
		return fmt.Errorf("hst: Window %d out of range [16, 65535]", c.Window)
	case !(c.SizeLimit > 0 && c.SizeLimit < 1):
		return fmt.Errorf("hst: SizeLimit %v out of range (0, 1)", c.SizeLimit)
	}
	if err := c.Calibrator.Validate(); err != nil {
		return fmt.Errorf("hst: Calibrator: %w", err)
	}
	return nil
}

// StateBytes is the approximate memory of one HST model's mutable state once bootstrapped:
// two uint16 mass counters per node per tree, the learned bounds and the calibrator. During
// the bootstrap it also buffers Window×Dim float64.
func (c HSTConfig) StateBytes() int {
	nodes := 1<<(c.Depth+1) - 1
	return 2*2*nodes*c.Trees + 16*c.Dim + 16*c.Calibrator.Window + 16*recentN
}

// forest is the structure of the trees: which feature each internal node splits and where,
// in normalised coordinates. It depends only on (Seed, Dim, Trees, Depth), so it is built once
// and shared, read-only, by every model with that shape.
type forest struct {
	internal int       // internal nodes per tree (2^Depth − 1)
	nodes    int       // nodes per tree (2^(Depth+1) − 1)
	dim      []uint8   // [tree*internal + node]
	split    []float64 // [tree*internal + node]
}

type forestKey struct {
	seed              uint64
	dim, trees, depth int
}

var (
	forestMu    sync.Mutex
	forestCache = map[forestKey]*forest{}
)

// buildForest draws each tree's workspace as in Tan et al. (2011): per feature s ~ U[0,1],
// range [s − 2·max(s,1−s), s + 2·max(s,1−s)]; each internal node halves its workspace along a
// random feature at the midpoint.
func buildForest(k forestKey) *forest {
	forestMu.Lock()
	defer forestMu.Unlock()
	if f, ok := forestCache[k]; ok {
		return f
	}
	rng := rand.New(rand.NewPCG(k.seed, 0x4853545472656573)) // "HSTTrees"
	internal := 1<<k.depth - 1
	f := &forest{internal: internal, nodes: 1<<(k.depth+1) - 1,
		dim: make([]uint8, k.trees*internal), split: make([]float64, k.trees*internal)}
	lo, hi := make([]float64, k.dim), make([]float64, k.dim)
	for t := 0; t < k.trees; t++ {
		for q := range lo {
			s := rng.Float64()
			r := 2 * max(s, 1-s)
			lo[q], hi[q] = s-r, s+r
		}
		var grow func(node, depth int, lo, hi []float64)
		grow = func(node, depth int, lo, hi []float64) {
			if depth == k.depth {
				return
			}
			q := rng.IntN(k.dim)
			p := (lo[q] + hi[q]) / 2
			f.dim[t*internal+node], f.split[t*internal+node] = uint8(q), p
			l, h := append([]float64(nil), hi...), append([]float64(nil), lo...)
			l[q] = p // left child: upper bound p
			grow(2*node+1, depth+1, lo, l)
			h[q] = p // right child: lower bound p
			grow(2*node+2, depth+1, h, hi)
		}
		grow(0, 0, lo, hi)
	}
	forestCache[k] = f
	return f
}

// HST is streaming half-space trees (Tan, Ting & Liu, "Fast anomaly detection for streaming
// data", IJCAI 2011) over feature vectors, as a detector.VectorModel.
//
// The first Window vectors are a bootstrap: they are buffered, score 0, and give each feature's
// bounds [min, max], by which every later vector is normalised (values outside the bounds fall
// to the outermost half-spaces, which is where they belong). Then every vector is scored
// against the mass profile of the previous window (the reference) while it is counted into
// the current one; every Window vectors the current profile becomes the reference.
//
// Raw score: per tree m = r·2^k / Window, where r is the reference mass of the node at which
// the vector's path stops (the first node whose mass is below SizeLimit·Window, or the leaf)
// and k its depth — m ≈ 1 in a region as dense as average, → 0 where nothing normal has been.
// The raw anomaly is −mean over trees of ln(m + 1/Window) (a geometric mean: one tree that
// isolates the vector counts, where the paper's arithmetic mass sum lets dense trees drown it)
// plus ln(Window) × the vector's L1 distance beyond the bootstrap bounds in units of each
// feature's bootstrap range. That second term is ours: a half-space tree's workspace ends
// one to two ranges past the data, so without it a value 3 ranges out and one 20 ranges out
// fall in the same outermost cell and score alike. A Calibrator then maps the raw score into
// [0,1] against the model's own recent raw scores (empirical CDF with an exponential tail;
// see detector.Calibrator).
//
// Memory: 4·Trees·(2^(Depth+1)−1) bytes of counters + 16·Dim + 16·Calibrator.Window + 128
// (≈ 10.2 KiB with the defaults and Dim 8); the tree structure is shared by all models of the
// same shape and seed. Deterministic for a seed; reads no clock (t only labels observations
// for Feedback).
type HST struct {
	cfg     HSTConfig
	f       *forest
	boot    []float64 // bootstrap buffer, Dim per vector; nil once learned
	lo, inv []float64 // per-feature min and 1/(max−min)
	ref     []uint16  // reference mass, [tree*nodes + node]
	cur     []uint16  // current window's mass
	count   int       // vectors counted into cur
	recent  recentRaw // raw scores of the last observations, for Feedback
	cal     *detector.Calibrator
	z       []float64 // scratch
}

var (
	_ detector.VectorModel   = (*HST)(nil)
	_ detector.FeedbackModel = (*HST)(nil)
)

// NewHST builds an HST model.
func NewHST(cfg HSTConfig) (*HST, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cal, _ := detector.NewCalibrator(cfg.Calibrator)
	f := buildForest(forestKey{cfg.Seed, cfg.Dim, cfg.Trees, cfg.Depth})
	return &HST{cfg: cfg, f: f, cal: cal, boot: make([]float64, 0, cfg.Dim*8),
		z: make([]float64, cfg.Dim)}, nil
}

// Algorithm returns "hst".
func (h *HST) Algorithm() string { return "hst" }

// Dim returns the configured vector length.
func (h *HST) Dim() int { return h.cfg.Dim }

func (h *HST) learned() bool { return h.lo != nil }

// Observe scores x (length Dim; a vector of another length or with a NaN scores 0 and is not
// learned) and then learns it.
func (h *HST) Observe(t int64, x []float64) float64 {
	if len(x) != h.cfg.Dim {
		return 0
	}
	for _, v := range x {
		if math.IsNaN(v) {
			return 0
		}
	}
	if !h.learned() {
		h.boot = append(h.boot, x...)
		if len(h.boot) == h.cfg.Window*h.cfg.Dim {
			h.finishBootstrap()
		}
		return 0
	}
	h.normalise(x)
	raw := h.raw()
	h.count1()
	h.recent.add(t, raw)
	return h.cal.Score(raw)
}

func (h *HST) finishBootstrap() {
	d := h.cfg.Dim
	h.lo, h.inv = make([]float64, d), make([]float64, d)
	for q := 0; q < d; q++ {
		lo, hi := math.Inf(1), math.Inf(-1)
		for i := q; i < len(h.boot); i += d {
			lo, hi = min(lo, h.boot[i]), max(hi, h.boot[i])
		}
		h.lo[q] = lo
		if hi > lo && !math.IsInf(hi-lo, 0) {
			h.inv[q] = 1 / (hi - lo)
		} else {
			h.inv[q] = 1 // a constant feature: any change of 1 unit spans the workspace
		}
	}
	n := h.f.nodes * h.cfg.Trees
	h.ref, h.cur = make([]uint16, n), make([]uint16, n)
	for i := 0; i < len(h.boot); i += d {
		h.normalise(h.boot[i : i+d])
		h.count1()
	}
	h.boot = nil
}

func (h *HST) normalise(x []float64) {
	for q, v := range x {
		z := (v - h.lo[q]) * h.inv[q]
		if math.IsInf(z, 0) {
			z = math.Copysign(1e9, z)
		}
		h.z[q] = z
	}
}

// raw scores h.z against the reference masses.
func (h *HST) raw() float64 {
	limit := uint16(math.Ceil(h.cfg.SizeLimit * float64(h.cfg.Window)))
	sum := 0.0
	for t := 0; t < h.cfg.Trees; t++ {
		base, ibase := t*h.f.nodes, t*h.f.internal
		node, depth := 0, 0
		for depth < h.cfg.Depth && h.ref[base+node] >= limit {
			if h.z[h.f.dim[ibase+node]] < h.f.split[ibase+node] {
				node = 2*node + 1
			} else {
				node = 2*node + 2
			}
			depth++
		}
		m := float64(h.ref[base+node]) * float64(uint(1)<<depth) / float64(h.cfg.Window)
		sum += math.Log(m + 1/float64(h.cfg.Window))
	}
	excess := 0.0
	for _, z := range h.z {
		excess += max(0, z-1, -z)
	}
	return -sum/float64(h.cfg.Trees) + excess*math.Log(float64(h.cfg.Window))
}

// count1 counts h.z into the current window and swaps windows when it is full.
func (h *HST) count1() {
	for t := 0; t < h.cfg.Trees; t++ {
		base, ibase := t*h.f.nodes, t*h.f.internal
		node := 0
		for depth := 0; ; depth++ {
			h.cur[base+node]++
			if depth == h.cfg.Depth {
				break
			}
			if h.z[h.f.dim[ibase+node]] < h.f.split[ibase+node] {
				node = 2*node + 1
			} else {
				node = 2*node + 2
			}
		}
	}
	h.count++
	if h.count == h.cfg.Window {
		h.ref, h.cur = h.cur, h.ref
		clear(h.cur)
		h.count = 0
	}
}

// Feedback tells the model its score at t was a false positive: the raw score it gave the
// vector observed at t (or, if t is not among the last 8 observations, the latest one) is
// added to the calibrator's history, so an equally unusual vector scores lower from now on.
// The mass profile is not changed (the vector was already counted).
func (h *HST) Feedback(t int64) {
	if raw, ok := h.recent.find(t); ok {
		h.cal.Add(raw)
	}
}

const hstMagic = "VHST"

// MarshalBinary writes the model's mutable state (the tree structure is rebuilt from the seed).
func (h *HST) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.Header(hstMagic, 1)
	w.U32(uint32(h.cfg.Dim))
	w.U32(uint32(h.cfg.Trees))
	w.U32(uint32(h.cfg.Depth))
	w.U32(uint32(h.cfg.Window))
	w.U64(h.cfg.Seed)
	w.Bool(h.learned())
	if !h.learned() {
		w.F64s(h.boot)
	} else {
		w.F64s(h.lo)
		w.F64s(h.inv)
		w.U32(uint32(len(h.ref)))
		for i := range h.ref {
			w.U32(uint32(h.ref[i]) | uint32(h.cur[i])<<16)
		}
		w.U32(uint32(h.count))
	}
	h.recent.write(&w)
	cal, _ := h.cal.MarshalBinary()
	w.Blob(cal)
	return w.Bytes(), nil
}

// UnmarshalBinary restores a checkpoint written by a model of the same shape and seed. On
// error h is unchanged.
func (h *HST) UnmarshalBinary(data []byte) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: hst: %s", detector.ErrCheckpoint, fmt.Sprintf(format, args...))
	}
	r := wire.NewReader(data)
	r.Header(hstMagic, 1)
	shape := [4]uint32{r.U32(), r.U32(), r.U32(), r.U32()}
	seed := r.U64()
	if r.Err() == nil && (shape != [4]uint32{uint32(h.cfg.Dim), uint32(h.cfg.Trees), uint32(h.cfg.Depth), uint32(h.cfg.Window)} || seed != h.cfg.Seed) {
		return fail("checkpoint of shape dim/trees/depth/window %v seed %d, model is %d/%d/%d/%d seed %d",
			shape, seed, h.cfg.Dim, h.cfg.Trees, h.cfg.Depth, h.cfg.Window, h.cfg.Seed)
	}
	n := &HST{cfg: h.cfg, f: h.f, z: make([]float64, h.cfg.Dim)}
	if !r.Bool() {
		n.boot = r.F64s("hst bootstrap", h.cfg.Window*h.cfg.Dim)
		if r.Err() == nil && (len(n.boot)%h.cfg.Dim != 0 || len(n.boot) == h.cfg.Window*h.cfg.Dim) {
			return fail("bootstrap buffer of %d values is not a partial window of %d-vectors", len(n.boot), h.cfg.Dim)
		}
	} else {
		n.lo = r.F64s("hst bounds", h.cfg.Dim)
		n.inv = r.F64s("hst scales", h.cfg.Dim)
		if r.Err() == nil && (len(n.lo) != h.cfg.Dim || len(n.inv) != h.cfg.Dim) {
			return fail("bounds for %d/%d features, want %d", len(n.lo), len(n.inv), h.cfg.Dim)
		}
		for q := range n.lo {
			if r.Err() == nil && (math.IsNaN(n.lo[q]) || math.IsInf(n.lo[q], 0) || !(n.inv[q] > 0) || math.IsInf(n.inv[q], 0)) {
				return fail("feature %d has bound %v scale %v", q, n.lo[q], n.inv[q])
			}
		}
		cells := h.f.nodes * h.cfg.Trees
		if k := r.U32(); r.Err() == nil && int(k) != cells {
			return fail("%d mass counters, want %d", k, cells)
		}
		n.ref, n.cur = make([]uint16, cells), make([]uint16, cells)
		for i := 0; i < cells && r.Err() == nil; i++ {
			v := r.U32()
			n.ref[i], n.cur[i] = uint16(v), uint16(v>>16)
		}
		n.count = int(r.U32())
		if r.Err() == nil && n.count >= h.cfg.Window {
			return fail("window count %d, want below %d", n.count, h.cfg.Window)
		}
	}
	if !n.recent.read(r) && r.Err() == nil {
		return fail("recent scores: counters out of range")
	}
	calData := r.Blob("hst calibrator", 64+8*h.cfg.Calibrator.Window)
	if err := r.Done(); err != nil {
		return fail("%v", err)
	}
	n.cal, _ = detector.NewCalibrator(h.cfg.Calibrator)
	if err := n.cal.UnmarshalBinary(calData); err != nil {
		return err
	}
	if n.boot != nil {
		b := make([]float64, len(n.boot), h.cfg.Window*h.cfg.Dim)
		copy(b, n.boot)
		n.boot = b
	} else if !n.learned() {
		n.boot = []float64{}
	}
	*h = *n
	return nil
}
