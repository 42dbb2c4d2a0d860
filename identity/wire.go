package identity

import (
	"encoding/binary"
	"math"
	"time"
	"unicode/utf8"
)

// The canonical binary encoding, written by hand so that there is exactly one encoding per value:
//   - unsigned integers: minimal uvarint (an overlong form is rejected);
//   - bool: one byte, 0 or 1;
//   - time: int64 Unix nanoseconds, 8 bytes big-endian; the zero time.Time is math.MinInt64;
//   - byte strings: uvarint length, then the bytes; strings must also be valid UTF-8;
//   - fixed-size arrays (keys, nonces, IDs): raw bytes;
//   - lists: uvarint count, then items in their field order; sets and maps: items with strictly
//     increasing keys.
// Every count and length is checked against a cap before anything is allocated.

type encoder struct{ b []byte }

func (e *encoder) u8(v uint8)        { e.b = append(e.b, v) }
func (e *encoder) uvarint(v uint64)  { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) raw(p []byte)      { e.b = append(e.b, p...) }
func (e *encoder) bytes(p []byte)    { e.uvarint(uint64(len(p))); e.b = append(e.b, p...) }
func (e *encoder) str(s string)      { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) key(k PublicKey)   { e.b = append(e.b, k.b[:]...) }
func (e *encoder) i64(v int64)       { e.b = binary.BigEndian.AppendUint64(e.b, uint64(v)) }
func (e *encoder) time(t time.Time)  { e.i64(timeToWire(t)) }
func (e *encoder) digest(d [32]byte) { e.b = append(e.b, d[:]...) }
func (e *encoder) boolean(v bool) {
	if v {
		e.u8(1)
	} else {
		e.u8(0)
	}
}

func timeToWire(t time.Time) int64 {
	if t.IsZero() {
		return math.MinInt64
	}
	return t.UnixNano()
}

func timeFromWire(n int64) time.Time {
	if n == math.MinInt64 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// timeRepresentable reports whether t survives the wire (zero, or within int64 nanoseconds).
func timeRepresentable(t time.Time) bool {
	return t.IsZero() || timeFromWire(timeToWire(t)).Equal(t) && timeToWire(t) != math.MinInt64
}

// decoder reads the canonical encoding. The first error sticks; later reads return zero values.
type decoder struct {
	b   []byte
	err error
	ctx string // what is being decoded, for error messages
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) malformed(what string) { d.fail(errf(ErrMalformed, "%s: %s", d.ctx, what)) }

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.malformed("truncated")
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) u8() uint8 {
	p := d.take(1)
	if p == nil {
		return 0
	}
	return p[0]
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.malformed("bad uvarint")
		return 0
	}
	if n > 1 && d.b[n-1] == 0 { // overlong: a final zero group adds nothing
		d.malformed("non-minimal uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a list length and checks it against max before the caller allocates.
func (d *decoder) count(what string, max int) int {
	v := d.uvarint()
	if d.err != nil {
		return 0
	}
	if v > uint64(max) {
		d.fail(tooLargef("%s: %s: %d items, max %d", d.ctx, what, v, max))
		return 0
	}
	return int(v)
}

// boundedInt reads a uvarint that must be ≤ max.
func (d *decoder) boundedInt(what string, max int) int { return d.count(what, max) }

func (d *decoder) boolean() bool {
	switch d.u8() {
	case 0:
		return false
	case 1:
		return true
	}
	d.malformed("bool not 0 or 1")
	return false
}

func (d *decoder) bytes(what string, max int) []byte {
	n := d.count(what, max)
	p := d.take(n)
	if p == nil {
		return nil
	}
	return append([]byte(nil), p...)
}

func (d *decoder) str(what string, max int) string {
	n := d.count(what, max)
	p := d.take(n)
	if p == nil {
		return ""
	}
	if !utf8.Valid(p) {
		d.malformed(what + ": invalid UTF-8")
		return ""
	}
	return string(p)
}

func (d *decoder) key() PublicKey {
	var k PublicKey
	copy(k.b[:], d.take(len(k.b)))
	return k
}

func (d *decoder) i64() int64 {
	p := d.take(8)
	if p == nil {
		return 0
	}
	return int64(binary.BigEndian.Uint64(p))
}

func (d *decoder) time() time.Time { return timeFromWire(d.i64()) }

func (d *decoder) digest() (out [32]byte) {
	copy(out[:], d.take(32))
	return out
}

// finish fails if bytes remain.
func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.malformed("trailing bytes")
	}
	return d.err
}
