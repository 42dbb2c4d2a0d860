package metric

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrCheckpoint is wrapped by every error of UnmarshalBinary.
var ErrCheckpoint = errors.New("metric: checkpoint")

// ErrConfig is wrapped by every error of a Config's Validate.
var ErrConfig = errors.New("metric: config")

const checkpointVersion = 1

// enc appends little-endian fields to a buffer.
type enc struct{ b []byte }

func newEnc(algorithm string) *enc {
	e := &enc{}
	e.str(algorithm)
	e.u64(checkpointVersion)
	return e
}
func (e *enc) u64(v uint64)  { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *enc) i64(v int64)   { e.u64(uint64(v)) }
func (e *enc) f64(v float64) { e.u64(math.Float64bits(v)) }
func (e *enc) str(s string)  { e.u64(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) boolean(v bool) {
	if v {
		e.u64(1)
	} else {
		e.u64(0)
	}
}

// dec reads what enc wrote; the first error sticks and later reads return zero values.
type dec struct {
	b   []byte
	err error
}

func newDec(b []byte, algorithm string) *dec {
	d := &dec{b: b}
	if a := d.str(64); d.err == nil && a != algorithm {
		d.fail("checkpoint of %q, not %q", a, algorithm)
	}
	if v := d.u64(); d.err == nil && v != checkpointVersion {
		d.fail("version %d, this build reads %d", v, checkpointVersion)
	}
	return d
}

func (d *dec) fail(format string, a ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCheckpoint, fmt.Sprintf(format, a...))
	}
}
func (d *dec) u64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail("truncated")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}
func (d *dec) i64() int64   { return int64(d.u64()) }
func (d *dec) f64() float64 { return math.Float64frombits(d.u64()) }
func (d *dec) boolean() bool {
	v := d.u64()
	if v > 1 {
		d.fail("bad boolean %d", v)
	}
	return v == 1
}

// n reads a count and refuses one above limit or above what the remaining bytes can hold
// (each element takes at least minBytes).
func (d *dec) n(limit int, minBytes int, what string) int {
	v := d.u64()
	if d.err != nil {
		return 0
	}
	if v > uint64(limit) {
		d.fail("%s: %d exceeds the limit %d", what, v, limit)
		return 0
	}
	if minBytes > 0 && v > uint64(len(d.b)/minBytes) {
		d.fail("%s: %d elements but %d bytes left", what, v, len(d.b))
		return 0
	}
	return int(v)
}
func (d *dec) str(limit int) string {
	n := d.n(limit, 1, "string")
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
func (d *dec) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// unit keeps a score in [0,1]; NaN (only reachable from a corrupt restored state whose sums
// overflow) counts as maximally unusual.
func unit(x float64) float64 {
	if math.IsNaN(x) {
		return 1
	}
	return min(max(x, 0), 1)
}
