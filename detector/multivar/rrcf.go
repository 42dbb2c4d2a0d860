package multivar

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/vigil-mesh/vigil/detector"
	"github.com/vigil-mesh/vigil/detector/internal/wire"
)

// RRCFConfig configures a robust random cut forest.
type RRCFConfig struct {
	// Dim is the length of every observed vector. Required; range [1, 256].
	Dim int
	// Shingle concatenates the last Shingle vectors into one point (1 = off); a univariate
	// stream with Shingle 4 is scored on the shape of its last four values. Range [1, 64];
	// Dim·Shingle at most 256.
	Shingle int
	// Trees is the number of trees. Default 32; range [1, 256].
	Trees int
	// TreeSize is how many recent points every tree holds (the sliding window). Default 256;
	// range [8, 4096].
	TreeSize int
	// Seed fixes the random cuts.
	Seed uint64
	// Calibrator maps the collusive displacement into [0,1].
	Calibrator detector.CalibratorConfig
}

// DefaultRRCFConfig returns Shingle 1, Trees 32, TreeSize 256, Seed 1 and the default
// calibrator, for vectors of length dim.
func DefaultRRCFConfig(dim int) RRCFConfig {
	return RRCFConfig{Dim: dim, Shingle: 1, Trees: 32, TreeSize: 256, Seed: 1, Calibrator: detector.DefaultCalibratorConfig()}
}

// Validate checks every field, naming the one that is wrong.
func (c RRCFConfig) Validate() error {
	switch {
	case c.Dim < 1 || c.Dim > 256:
		return fmt.Errorf("rrcf: Dim %d out of range [1, 256]", c.Dim)
	case c.Shingle < 1 || c.Shingle > 64 || c.Dim*c.Shingle > 256:
		return fmt.Errorf("rrcf: Shingle %d out of range [1, 64] with Dim·Shingle ≤ 256 (Dim %d)", c.Shingle, c.Dim)
	case c.Trees < 1 || c.Trees > 256:
		return fmt.Errorf("rrcf: Trees %d out of range [1, 256]", c.Trees)
	case c.TreeSize < 8 || c.TreeSize > 4096:
		return fmt.Errorf("rrcf: TreeSize %d out of range [8, 4096]", c.TreeSize)
	}
	if err := c.Calibrator.Validate(); err != nil {
		return fmt.Errorf("rrcf: Calibrator: %w", err)
	}
	return nil
}

// StateBytes is the approximate memory of one model: per tree 2·TreeSize nodes of 32 bytes
// and two bounding-box corners of Dim·Shingle float64, plus the shared window of points and
// the calibrator.
func (c RRCFConfig) StateBytes() int {
	d := c.Dim * c.Shingle
	return c.Trees*2*c.TreeSize*(32+16*d) + c.TreeSize*8*d + 16*c.Calibrator.Window
}

const none = -1

// rnode is a node of one tree. A leaf has dim == none and point set; an internal node has a
// cut (dim, cut): points with x[dim] <= cut go left.
type rnode struct {
	parent, left, right int32
	dim                 int32
	point               int32 // leaf: index in the window ring
	count               int32 // points below (a leaf counts duplicates)
	cut                 float64
}

type rtree struct {
	nodes  []rnode
	lo, hi []float64 // bounding box per node, d per node
	free   []int32
	root   int32
	leafOf []int32 // window slot → this tree's leaf holding it (none if the slot is a duplicate's)
}

// RRCF is a robust random cut forest (Guha, Mishra, Roy & Schrijvers, "Robust random cut
// forest based anomaly detection on streams", ICML 2016) over feature vectors, as a
// detector.VectorModel. Every tree holds the last TreeSize points (optionally shingled): each
// new point is inserted by the paper's insertion algorithm (a random cut, chosen with
// probability proportional to each feature's range in the bounding box that includes the
// point, separates the point from a subtree as high as possible), the oldest point is forgotten
// once the window is full, and the score is the point's collusive displacement (CoDisp: the
// largest sibling-size / subtree-size ratio on its path to the root) averaged over the trees,
// mapped into [0,1] by a detector.Calibrator.
//
// RRCF cuts each feature in proportion to its range, so features must be on comparable scales
// (standardise them first): a value 40 standard deviations out on a feature whose spread is
// tiny beside the others' is barely noticed. HST normalises by its bootstrap bounds instead.
//
// Memory: Trees × 2·TreeSize × (32 + 16·Dim·Shingle) bytes + the window (see StateBytes):
// about 2.5 MiB with the defaults at dim 8, so RRCF is meant for a few streams (vigil detect,
// a node-wide model), not one per agent; per agent use HST. Deterministic for a seed; the
// random source's state is part of the checkpoint.
type RRCF struct {
	cfg    RRCFConfig
	d      int       // point length, Dim·Shingle
	pcg    *rand.PCG // checkpointed
	rng    *rand.Rand
	trees  []rtree
	window []float64 // TreeSize points ring, d each
	n      int       // points in the window
	next   int       // slot the next point goes to
	shing  []float64 // the last Shingle vectors, oldest first
	seen   int       // vectors seen, up to Shingle
	cal    *detector.Calibrator
	recent recentRaw // raw scores of the last observations, for Feedback
}

var (
	_ detector.VectorModel   = (*RRCF)(nil)
	_ detector.FeedbackModel = (*RRCF)(nil)
)

// NewRRCF builds an empty forest.
func NewRRCF(cfg RRCFConfig) (*RRCF, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := cfg.Dim * cfg.Shingle
	pcg := rand.NewPCG(cfg.Seed, 0x52524346) // "RRCF"
	m := &RRCF{cfg: cfg, d: d, pcg: pcg, rng: rand.New(pcg), window: make([]float64, cfg.TreeSize*d),
		shing: make([]float64, 0, d)}
	m.cal, _ = detector.NewCalibrator(cfg.Calibrator)
	m.trees = make([]rtree, cfg.Trees)
	for i := range m.trees {
		m.trees[i] = newTree(cfg.TreeSize, d)
	}
	return m, nil
}

func newTree(size, d int) rtree {
	t := rtree{nodes: make([]rnode, 0, 2*size), lo: make([]float64, 0, 2*size*d), hi: make([]float64, 0, 2*size*d),
		root: none, leafOf: make([]int32, size)}
	for i := range t.leafOf {
		t.leafOf[i] = none
	}
	return t
}

// Algorithm returns "rrcf".
func (m *RRCF) Algorithm() string { return "rrcf" }

// Dim returns the configured vector length (before shingling).
func (m *RRCF) Dim() int { return m.cfg.Dim }

func (t *rtree) alloc(d int) int32 {
	if k := len(t.free); k > 0 {
		i := t.free[k-1]
		t.free = t.free[:k-1]
		return i
	}
	t.nodes = append(t.nodes, rnode{})
	t.lo = append(t.lo, make([]float64, d)...)
	t.hi = append(t.hi, make([]float64, d)...)
	return int32(len(t.nodes) - 1)
}

func (t *rtree) box(i int32, d int) (lo, hi []float64) {
	return t.lo[int(i)*d : int(i)*d+d], t.hi[int(i)*d : int(i)*d+d]
}

// insert adds the point in window slot p (values x) and returns its leaf.
func (m *RRCF) insert(t *rtree, p int32, x []float64) int32 {
	d := m.d
	newLeaf := func(parent int32) int32 {
		l := t.alloc(d)
		t.nodes[l] = rnode{parent: parent, left: none, right: none, dim: none, point: p, count: 1}
		lo, hi := t.box(l, d)
		copy(lo, x)
		copy(hi, x)
		t.leafOf[p] = l
		return l
	}
	if t.root == none {
		t.root = newLeaf(none)
		return t.root
	}
	node := t.root
	for {
		lo, hi := t.box(node, d)
		// The bounding box of the subtree with x added, and a cut drawn over it.
		total := 0.0
		for q := 0; q < d; q++ {
			total += max(hi[q], x[q]) - min(lo[q], x[q])
		}
		if total == 0 { // x equals every point below: a duplicate of this leaf
			for n := node; t.nodes[n].dim != none; n = t.nodes[n].left {
				node = t.nodes[n].left
			}
			t.leafOf[p] = none
			for n := node; n != none; n = t.nodes[n].parent {
				t.nodes[n].count++
			}
			return node
		}
		r := m.rng.Float64() * total
		q := 0
		var cut float64
		for ; q < d; q++ {
			span := max(hi[q], x[q]) - min(lo[q], x[q])
			if r < span || q == d-1 {
				cut = min(lo[q], x[q]) + min(r, span)
				break
			}
			r -= span
		}
		// Does the cut separate x from the whole subtree?
		sepLeft := x[q] <= cut && cut < lo[q]  // x alone on the left
		sepRight := x[q] > cut && cut >= hi[q] // x alone on the right
		if sepLeft || sepRight {
			parent := t.nodes[node].parent
			in := t.alloc(d)
			leaf := newLeaf(in)
			t.nodes[in] = rnode{parent: parent, dim: int32(q), cut: cut, count: t.nodes[node].count + 1, point: none}
			if sepLeft {
				t.nodes[in].left, t.nodes[in].right = leaf, node
			} else {
				t.nodes[in].left, t.nodes[in].right = node, leaf
			}
			ilo, ihi := t.box(in, d)
			for k := 0; k < d; k++ {
				ilo[k], ihi[k] = min(lo[k], x[k]), max(hi[k], x[k])
			}
			t.nodes[node].parent = in
			if parent == none {
				t.root = in
			} else if t.nodes[parent].left == node {
				t.nodes[parent].left = in
			} else {
				t.nodes[parent].right = in
			}
			for n := parent; n != none; n = t.nodes[n].parent {
				t.nodes[n].count++
				nlo, nhi := t.box(n, d)
				for k := 0; k < d; k++ {
					nlo[k], nhi[k] = min(nlo[k], x[k]), max(nhi[k], x[k])
				}
			}
			return leaf
		}
		if t.nodes[node].dim == none {
			// A leaf whose box is not separable from x along q by this cut: x differs from
			// it elsewhere. Cutting between them along a feature where they differ keeps
			// the tree valid; draw again.
			continue
		}
		n := &t.nodes[node]
		if x[n.dim] <= n.cut {
			node = n.left
		} else {
			node = n.right
		}
	}
}

// forget removes window slot p from the tree.
func (m *RRCF) forget(t *rtree, p int32, x []float64) {
	d := m.d
	leaf := t.leafOf[p]
	if leaf == none { // a duplicate: find the leaf holding an equal point and drop one count
		leaf = t.root
		for t.nodes[leaf].dim != none {
			n := t.nodes[leaf]
			if x[n.dim] <= n.cut {
				leaf = n.left
			} else {
				leaf = n.right
			}
		}
		for n := leaf; n != none; n = t.nodes[n].parent {
			t.nodes[n].count--
		}
		return
	}
	t.leafOf[p] = none
	if t.nodes[leaf].count > 1 { // other duplicates remain: hand the leaf to one of them
		for n := leaf; n != none; n = t.nodes[n].parent {
			t.nodes[n].count--
		}
		for s := range t.leafOf { // slots are few (TreeSize); find a duplicate's slot
			if int32(s) != p && t.leafOf[s] == none && s < m.n && m.equalSlot(int32(s), x) {
				t.leafOf[s] = leaf
				t.nodes[leaf].point = int32(s)
				break
			}
		}
		return
	}
	parent := t.nodes[leaf].parent
	t.free = append(t.free, leaf)
	if parent == none {
		t.root = none
		return
	}
	sib := t.nodes[parent].left
	if sib == leaf {
		sib = t.nodes[parent].right
	}
	grand := t.nodes[parent].parent
	t.free = append(t.free, parent)
	t.nodes[sib].parent = grand
	if grand == none {
		t.root = sib
		return
	}
	if t.nodes[grand].left == parent {
		t.nodes[grand].left = sib
	} else {
		t.nodes[grand].right = sib
	}
	for n := grand; n != none; n = t.nodes[n].parent {
		t.nodes[n].count--
		nlo, nhi := t.box(n, d)
		llo, lhi := t.box(t.nodes[n].left, d)
		rlo, rhi := t.box(t.nodes[n].right, d)
		for k := 0; k < d; k++ {
			nlo[k], nhi[k] = min(llo[k], rlo[k]), max(lhi[k], rhi[k])
		}
	}
}

func (m *RRCF) slot(p int32) []float64 { return m.window[int(p)*m.d : int(p)*m.d+m.d] }

func (m *RRCF) equalSlot(p int32, x []float64) bool {
	for k, v := range m.slot(p) {
		if v != x[k] {
			return false
		}
	}
	return true
}

// codisp is the collusive displacement of leaf: max over its ancestors' children on its path
// of sibling.count / node.count.
func codisp(t *rtree, leaf int32) float64 {
	best := 0.0
	for n := leaf; t.nodes[n].parent != none; n = t.nodes[n].parent {
		p := t.nodes[n].parent
		sib := t.nodes[p].left
		if sib == n {
			sib = t.nodes[p].right
		}
		best = max(best, float64(t.nodes[sib].count)/float64(t.nodes[n].count))
	}
	return best
}

// Observe scores x (length Dim; another length or a non-finite value scores 0 and is not
// learned) and then keeps it in the window. While the shingle is filling, it scores 0.
func (m *RRCF) Observe(t int64, x []float64) float64 {
	if len(x) != m.cfg.Dim {
		return 0
	}
	for _, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return 0
		}
	}
	if len(m.shing) == m.d {
		copy(m.shing, m.shing[m.cfg.Dim:])
		copy(m.shing[m.d-m.cfg.Dim:], x)
	} else {
		m.shing = append(m.shing, x...)
		if len(m.shing) < m.d {
			return 0
		}
	}
	p := int32(m.next)
	if m.n == m.cfg.TreeSize {
		old := m.slot(p)
		for i := range m.trees {
			m.forget(&m.trees[i], p, old)
		}
	} else {
		m.n++
	}
	copy(m.slot(p), m.shing)
	m.next = (m.next + 1) % m.cfg.TreeSize
	sum := 0.0
	for i := range m.trees {
		leaf := m.insert(&m.trees[i], p, m.shing)
		sum += codisp(&m.trees[i], leaf)
	}
	raw := sum / float64(len(m.trees))
	m.recent.add(t, raw)
	return m.cal.Score(raw)
}

// Feedback adds the raw CoDisp of the observation at t (or the latest) to the calibrator's
// history (see HST.Feedback).
func (m *RRCF) Feedback(t int64) {
	if raw, ok := m.recent.find(t); ok {
		m.cal.Add(raw)
	}
}

const rrcfMagic = "VRCF"

// MarshalBinary writes the window, every tree and the random source's state.
func (m *RRCF) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.Header(rrcfMagic, 1)
	for _, v := range []int{m.cfg.Dim, m.cfg.Shingle, m.cfg.Trees, m.cfg.TreeSize} {
		w.U32(uint32(v))
	}
	w.U64(m.cfg.Seed)
	pcg, _ := m.pcg.MarshalBinary()
	w.Blob(pcg)
	w.U32(uint32(m.n))
	w.U32(uint32(m.next))
	w.F64s(m.window[:m.n*m.d])
	w.F64s(m.shing)
	m.recent.write(&w)
	for i := range m.trees {
		t := &m.trees[i]
		w.U32(uint32(t.root))
		w.U32(uint32(len(t.nodes)))
		for _, n := range t.nodes {
			for _, v := range []int32{n.parent, n.left, n.right, n.dim, n.point, n.count} {
				w.U32(uint32(v))
			}
			w.F64(n.cut)
		}
		w.F64s(t.lo)
		w.F64s(t.hi)
		free := make([]uint32, len(t.free))
		for k, f := range t.free {
			free[k] = uint32(f)
		}
		w.U32s(free)
		leafOf := make([]uint32, len(t.leafOf))
		for k, l := range t.leafOf {
			leafOf[k] = uint32(l)
		}
		w.U32s(leafOf)
	}
	c, _ := m.cal.MarshalBinary()
	w.Blob(c)
	return w.Bytes(), nil
}

// UnmarshalBinary restores a checkpoint of a forest with the same config. It checks that
// every index is in range and that the trees are consistent (parents and children agree,
// counts add up, each tree holds the window), so a forged checkpoint cannot make Observe
// panic or loop. On error m is unchanged.
func (m *RRCF) UnmarshalBinary(data []byte) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: rrcf: %s", detector.ErrCheckpoint, fmt.Sprintf(format, args...))
	}
	r := wire.NewReader(data)
	r.Header(rrcfMagic, 1)
	shape := [4]uint32{r.U32(), r.U32(), r.U32(), r.U32()}
	seed := r.U64()
	if r.Err() == nil && (shape != [4]uint32{uint32(m.cfg.Dim), uint32(m.cfg.Shingle), uint32(m.cfg.Trees), uint32(m.cfg.TreeSize)} || seed != m.cfg.Seed) {
		return fail("checkpoint of dim/shingle/trees/size %v seed %d does not match the model", shape, seed)
	}
	fresh, _ := NewRRCF(m.cfg)
	if err := fresh.pcg.UnmarshalBinary(r.Blob("rrcf random state", 64)); r.Err() == nil && err != nil {
		return fail("random state: %v", err)
	}
	size, d := m.cfg.TreeSize, m.d
	fresh.n, fresh.next = int(r.U32()), int(r.U32())
	if r.Err() == nil && (fresh.n > size || fresh.next >= size || (fresh.n < size && fresh.next != fresh.n)) {
		return fail("window count %d, next %d for size %d", fresh.n, fresh.next, size)
	}
	win := r.F64s("rrcf window", size*d)
	shing := r.F64s("rrcf shingle", d)
	if !fresh.recent.read(r) && r.Err() == nil {
		return fail("recent scores: counters out of range")
	}
	if r.Err() == nil && (len(win) != fresh.n*d || (len(shing) != d && fresh.n > 0) || len(shing)%m.cfg.Dim != 0) {
		return fail("window of %d values for %d points, shingle of %d", len(win), fresh.n, len(shing))
	}
	copy(fresh.window, win)
	fresh.shing = append(fresh.shing[:0], shing...)
	for i := range fresh.trees {
		t := &fresh.trees[i]
		t.root = int32(r.U32())
		nn := r.U32()
		if r.Err() != nil {
			break
		}
		if int(nn) > 2*size {
			return fail("tree %d has %d nodes, more than %d", i, nn, 2*size)
		}
		t.nodes = t.nodes[:0]
		for k := 0; k < int(nn) && r.Err() == nil; k++ {
			var n rnode
			n.parent, n.left, n.right = int32(r.U32()), int32(r.U32()), int32(r.U32())
			n.dim, n.point, n.count = int32(r.U32()), int32(r.U32()), int32(r.U32())
			n.cut = r.F64()
			t.nodes = append(t.nodes, n)
		}
		lo := r.F64s("rrcf boxes", 2*size*d)
		hi := r.F64s("rrcf boxes", 2*size*d)
		free := r.U32s("rrcf free list", 2*size)
		leafOf := r.U32s("rrcf leaves", size)
		if r.Err() != nil {
			break
		}
		if len(lo) != int(nn)*d || len(hi) != int(nn)*d || len(leafOf) != size {
			return fail("tree %d: boxes or leaf table of the wrong length", i)
		}
		t.lo, t.hi = append(t.lo[:0], lo...), append(t.hi[:0], hi...)
		for _, f := range free {
			t.free = append(t.free, int32(f))
		}
		for k, l := range leafOf {
			t.leafOf[k] = int32(l)
		}
		if err := fresh.checkTree(t); err != nil {
			return fail("tree %d: %v", i, err)
		}
	}
	calData := r.Blob("rrcf calibrator", 64+8*m.cfg.Calibrator.Window)
	if err := r.Done(); err != nil {
		return fail("%v", err)
	}
	if err := fresh.cal.UnmarshalBinary(calData); err != nil {
		return err
	}
	*m = *fresh
	return nil
}

// checkTree verifies a decoded tree's structure against the window.
func (m *RRCF) checkTree(t *rtree) error {
	nn := int32(len(t.nodes))
	in := func(i int32) bool { return i >= 0 && i < nn }
	isFree := make([]bool, nn)
	for _, f := range t.free {
		if !in(f) || isFree[f] {
			return fmt.Errorf("free list entry %d invalid", f)
		}
		isFree[f] = true
	}
	if m.n == 0 {
		if t.root != none {
			return fmt.Errorf("empty window but a root")
		}
		for _, l := range t.leafOf {
			if l != none {
				return fmt.Errorf("empty window but leaves")
			}
		}
		return nil
	}
	if !in(t.root) || isFree[t.root] || t.nodes[t.root].parent != none {
		return fmt.Errorf("root %d invalid", t.root)
	}
	// Walk from the root; every reachable node is visited once, counts must add up.
	visited := make([]bool, nn)
	var walk func(i int32, depth int) (int32, error)
	walk = func(i int32, depth int) (int32, error) {
		if !in(i) || isFree[i] || visited[i] || depth > int(nn) {
			return 0, fmt.Errorf("node %d invalid or reached twice", i)
		}
		visited[i] = true
		n := t.nodes[i]
		lo, hi := t.box(i, m.d)
		if n.dim == none {
			if n.point < 0 || int(n.point) >= m.n || t.leafOf[n.point] != i || n.count < 1 {
				return 0, fmt.Errorf("leaf %d invalid", i)
			}
			for k, v := range m.slot(n.point) {
				if lo[k] != v || hi[k] != v {
					return 0, fmt.Errorf("leaf %d box differs from its point", i)
				}
			}
			return n.count, nil
		}
		if n.dim < 0 || int(n.dim) >= m.d || !in(n.left) || !in(n.right) || t.nodes[n.left].parent != i || t.nodes[n.right].parent != i {
			return 0, fmt.Errorf("internal node %d invalid", i)
		}
		a, err := walk(n.left, depth+1)
		if err != nil {
			return 0, err
		}
		b, err := walk(n.right, depth+1)
		if err != nil {
			return 0, err
		}
		if n.count != a+b {
			return 0, fmt.Errorf("node %d count %d, children hold %d", i, n.count, a+b)
		}
		llo, lhi := t.box(n.left, m.d)
		rlo, rhi := t.box(n.right, m.d)
		for k := range lo {
			if lo[k] != min(llo[k], rlo[k]) || hi[k] != max(lhi[k], rhi[k]) {
				return 0, fmt.Errorf("node %d box is not its children's", i)
			}
		}
		return n.count, nil
	}
	total, err := walk(t.root, 0)
	if err != nil {
		return err
	}
	if int(total) != m.n {
		return fmt.Errorf("holds %d points, the window %d", total, m.n)
	}
	for i := range visited {
		if !visited[i] && !isFree[i] {
			return fmt.Errorf("node %d is neither in the tree nor free", i)
		}
	}
	for s, l := range t.leafOf {
		if l != none && (!in(l) || !visited[l] || t.nodes[l].dim != none || int(t.nodes[l].point) != s) {
			return fmt.Errorf("leaf table entry %d invalid", s)
		}
		if l == none && s < m.n { // a duplicate: the tree must hold an equal point where its cuts lead
			x := m.slot(int32(s))
			leaf := t.root
			for t.nodes[leaf].dim != none {
				if n := t.nodes[leaf]; x[n.dim] <= n.cut {
					leaf = n.left
				} else {
					leaf = n.right
				}
			}
			if t.nodes[leaf].count < 2 || !m.equalSlot(t.nodes[leaf].point, x) {
				return fmt.Errorf("window slot %d is in no leaf", s)
			}
		}
	}
	return nil
}
