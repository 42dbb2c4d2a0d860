package multivar

import "github.com/vigil-mesh/vigil/detector/internal/wire"

// recentRaw remembers the raw scores of the last few observations with their times, so
// Feedback(t) can fold the raw score of the observation the alert was about, even when the
// operator's verdict arrives after a few more observations.
type recentRaw struct {
	t   [recentN]int64
	raw [recentN]float64
	n   int // how many are held (≤ recentN)
	pos int // next slot
}

const recentN = 8

func (r *recentRaw) add(t int64, raw float64) {
	r.t[r.pos], r.raw[r.pos] = t, raw
	r.pos = (r.pos + 1) % recentN
	r.n = min(r.n+1, recentN)
}

// find returns the newest raw score observed at t, or the newest of all if none was at t.
func (r *recentRaw) find(t int64) (float64, bool) {
	if r.n == 0 {
		return 0, false
	}
	for k := 1; k <= r.n; k++ {
		i := (r.pos - k + recentN) % recentN
		if r.t[i] == t {
			return r.raw[i], true
		}
	}
	return r.raw[(r.pos-1+recentN)%recentN], true
}

func (r *recentRaw) write(w *wire.Writer) {
	w.U32(uint32(r.n))
	w.U32(uint32(r.pos))
	for i := range recentN {
		w.I64(r.t[i])
		w.F64(r.raw[i])
	}
}

// read decodes what write wrote; ok is false when the counters are out of range.
func (r *recentRaw) read(rd *wire.Reader) (ok bool) {
	n, pos := rd.U32(), rd.U32()
	for i := range recentN {
		r.t[i] = rd.I64()
		r.raw[i] = rd.F64()
	}
	r.n, r.pos = int(n), int(pos)
	return n <= recentN && pos < recentN && (n == recentN || pos == n)
}
