package metric

// intDict is an insertion-only map from small non-negative ints to ints that iterates in the
// order CPython 2.7's dict does (open addressing over 2^k slots, perturbed probing, resize to
// the next power of two above 4·used when two thirds full). CAD OSE's learning depends on the
// order in which it walks a dict of contexts, so a faithful port needs the same order.
type intDict struct {
	keys  []int64 // slot keys; valid where used[i]
	vals  []int32
	used  []bool
	count int
}

const pyDictMinSize = 8

func (d *intDict) init() {
	d.keys = make([]int64, pyDictMinSize)
	d.vals = make([]int32, pyDictMinSize)
	d.used = make([]bool, pyDictMinSize)
	d.count = 0
}

// slot returns the slot of key k: where it is, or the empty slot where it would go.
func (d *intDict) slot(k int64) int {
	mask := uint64(len(d.keys) - 1)
	h := uint64(k)
	i := h & mask
	if !d.used[i] || d.keys[i] == k {
		return int(i)
	}
	perturb := h
	for {
		i = (i << 2) + i + perturb + 1
		j := i & mask
		if !d.used[j] || d.keys[j] == k {
			return int(j)
		}
		perturb >>= 5
	}
}

// setDefault is Python's d.setdefault(k, v): the value of k, inserting v if k is absent.
func (d *intDict) setDefault(k int64, v int32) int32 {
	if d.keys == nil {
		d.init()
	}
	j := d.slot(k)
	if d.used[j] {
		return d.vals[j]
	}
	d.keys[j], d.vals[j], d.used[j] = k, v, true
	d.count++
	// No deletions, so fill == used.
	if d.count*3 >= len(d.keys)*2 {
		if d.count > 50000 {
			d.resize(2 * d.count)
		} else {
			d.resize(4 * d.count)
		}
	}
	return v
}

func (d *intDict) resize(minUsed int) {
	size := pyDictMinSize
	for size <= minUsed {
		size <<= 1
	}
	ok, ov, ou := d.keys, d.vals, d.used
	d.keys = make([]int64, size)
	d.vals = make([]int32, size)
	d.used = make([]bool, size)
	for i := range ok {
		if ou[i] {
			j := d.slot(ok[i])
			d.keys[j], d.vals[j], d.used[j] = ok[i], ov[i], true
		}
	}
}

// each calls f for every entry in CPython's iteration order (slot order).
func (d *intDict) each(f func(k int64, v int32)) {
	for i, u := range d.used {
		if u {
			f(d.keys[i], d.vals[i])
		}
	}
}

// pyTupleHash is CPython 2.7's hash of a tuple of ints on a 64-bit build (an int hashes to
// itself, except −1 to −2).
func pyTupleHash(items []int64) int64 {
	x := int64(0x345678)
	mult := int64(1000003)
	n := int64(len(items))
	for _, y := range items {
		n--
		if y == -1 {
			y = -2
		}
		x = (x ^ y) * mult
		mult += 82520 + n + n
	}
	x += 97531
	if x == -1 {
		x = -2
	}
	return x
}
