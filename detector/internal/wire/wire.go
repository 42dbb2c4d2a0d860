// Package wire is the small binary encoding the detector's checkpoints share: little-endian
// fixed-width integers and floats, and length-prefixed byte strings and slices whose lengths
// are checked against a caller's cap before anything is allocated.
//
//	var w wire.Writer
//	w.U32(7); w.F64s(xs)
//	r := wire.NewReader(w.Bytes())
//	n := r.U32(); ys := r.F64s(1 << 16)
//	if err := r.Err(); err != nil { … }
//
// Invariant: a Reader never allocates more than the caps it is given, never panics on any
// input, and once it fails every later read returns zero and Err stays the first error.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrTruncated reports input that ended inside a value.
var ErrTruncated = errors.New("checkpoint truncated")

// Writer appends values to a growing buffer. The zero value is ready to use.
type Writer struct{ b []byte }

// Bytes returns the encoded bytes.
func (w *Writer) Bytes() []byte { return w.b }

func (w *Writer) U8(v uint8)   { w.b = append(w.b, v) }
func (w *Writer) U32(v uint32) { w.b = binary.LittleEndian.AppendUint32(w.b, v) }
func (w *Writer) U64(v uint64) { w.b = binary.LittleEndian.AppendUint64(w.b, v) }
func (w *Writer) I64(v int64)  { w.U64(uint64(v)) }
func (w *Writer) F64(v float64) {
	w.U64(math.Float64bits(v))
}
func (w *Writer) Bool(v bool) {
	if v {
		w.U8(1)
	} else {
		w.U8(0)
	}
}

// Blob writes a length-prefixed byte string.
func (w *Writer) Blob(p []byte) { w.U32(uint32(len(p))); w.b = append(w.b, p...) }

// String writes a length-prefixed string.
func (w *Writer) String(s string) { w.U32(uint32(len(s))); w.b = append(w.b, s...) }

// F64s writes a length-prefixed slice of float64.
func (w *Writer) F64s(xs []float64) {
	w.U32(uint32(len(xs)))
	for _, x := range xs {
		w.F64(x)
	}
}

// U32s writes a length-prefixed slice of uint32.
func (w *Writer) U32s(xs []uint32) {
	w.U32(uint32(len(xs)))
	for _, x := range xs {
		w.U32(x)
	}
}

// Reader decodes values written by Writer. Reads after an error return zero values.
type Reader struct {
	b   []byte
	err error
}

// NewReader reads from b (not copied; blobs returned alias b).
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// Err is the first error met, or nil.
func (r *Reader) Err() error { return r.err }

// Fail records err (if no error is recorded yet), so later reads return zero values.
func (r *Reader) Fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// Done reports an error when bytes are left over after the last value.
func (r *Reader) Done() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("checkpoint has %d trailing bytes", len(r.b))
	}
	return r.err
}

func (r *Reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.err = ErrTruncated
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *Reader) U8() uint8 {
	p := r.take(1)
	if p == nil {
		return 0
	}
	return p[0]
}

func (r *Reader) U32() uint32 {
	p := r.take(4)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(p)
}

func (r *Reader) U64() uint64 {
	p := r.take(8)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(p)
}

func (r *Reader) I64() int64   { return int64(r.U64()) }
func (r *Reader) F64() float64 { return math.Float64frombits(r.U64()) }

// Bool reads a byte that must be 0 or 1.
func (r *Reader) Bool() bool {
	v := r.U8()
	if v > 1 {
		r.Fail(fmt.Errorf("checkpoint: boolean byte is %d, want 0 or 1", v))
		return false
	}
	return v == 1
}

// length reads a length prefix and checks it against max and against the bytes left
// (each element at least elem bytes), so a forged length never causes a large allocation.
func (r *Reader) length(what string, max, elem int) int {
	n := r.U32()
	if r.err != nil {
		return 0
	}
	if uint64(n) > uint64(max) {
		r.Fail(fmt.Errorf("checkpoint: %s has length %d, more than the limit %d", what, n, max))
		return 0
	}
	if uint64(n)*uint64(elem) > uint64(len(r.b)) {
		r.Fail(ErrTruncated)
		return 0
	}
	return int(n)
}

// Blob reads a byte string of at most max bytes. The result aliases the input.
func (r *Reader) Blob(what string, max int) []byte {
	n := r.length(what, max, 1)
	return r.take(n)
}

// String reads a string of at most max bytes.
func (r *Reader) String(what string, max int) string {
	return string(r.Blob(what, max))
}

// F64s reads a slice of at most max float64.
func (r *Reader) F64s(what string, max int) []float64 {
	n := r.length(what, max, 8)
	if r.err != nil {
		return nil
	}
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = r.F64()
	}
	return xs
}

// U32s reads a slice of at most max uint32.
func (r *Reader) U32s(what string, max int) []uint32 {
	n := r.length(what, max, 4)
	if r.err != nil {
		return nil
	}
	xs := make([]uint32, n)
	for i := range xs {
		xs[i] = r.U32()
	}
	return xs
}

// Header writes a 4-byte magic and a version byte.
func (w *Writer) Header(magic string, version uint8) {
	w.b = append(w.b, magic[:4]...)
	w.U8(version)
}

// Header checks the magic and version written by Writer.Header.
func (r *Reader) Header(magic string, version uint8) {
	p := r.take(4)
	if r.err != nil {
		return
	}
	if string(p) != magic[:4] {
		r.Fail(fmt.Errorf("checkpoint: magic %q, want %q (not a %s checkpoint)", p, magic[:4], magic))
		return
	}
	if v := r.U8(); r.err == nil && v != version {
		r.Fail(fmt.Errorf("checkpoint: %s version %d, want %d", magic, v, version))
	}
}
