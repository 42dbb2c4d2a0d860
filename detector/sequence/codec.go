package sequence

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Checkpoint limits: a decoder refuses anything larger before allocating for it.
const (
	// maxCheckpointVocab caps the vocabulary a checkpoint may declare.
	maxCheckpointVocab = 1 << 16
	// maxCheckpointFloats caps the number of float32 parameters in one array of a checkpoint.
	maxCheckpointFloats = 1 << 26
	// maxCheckpointNodes caps the number of n-gram contexts in a checkpoint.
	maxCheckpointNodes = 1 << 24
	// maxCheckpointValue bounds the size of every stored float (trained weights stay far below).
	maxCheckpointValue = 1e6
)

// enc appends little-endian values to a byte slice.
type enc struct{ b []byte }

func (e *enc) u8(v uint8)   { e.b = append(e.b, v) }
func (e *enc) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *enc) u64(v uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *enc) f64(v float64) {
	e.u64(math.Float64bits(v))
}
func (e *enc) f32s(v []float32) {
	e.u32(uint32(len(v)))
	for _, x := range v {
		e.u32(math.Float32bits(x))
	}
}
func (e *enc) u32s(v []uint32) {
	e.u32(uint32(len(v)))
	for _, x := range v {
		e.u32(x)
	}
}

// dec reads what enc wrote. The first failure sticks: later reads return zero values and err
// keeps the first error, which names the part being read.
type dec struct {
	b   []byte
	off int
	err error
}

func (d *dec) fail(what string, format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s: %s", ErrCheckpoint, what, fmt.Sprintf(format, args...))
	}
}

func (d *dec) need(what string, n int) bool {
	if d.err != nil {
		return false
	}
	if n < 0 || len(d.b)-d.off < n {
		d.fail(what, "truncated at byte %d (need %d more, have %d)", d.off, n, len(d.b)-d.off)
		return false
	}
	return true
}

func (d *dec) u8(what string) uint8 {
	if !d.need(what, 1) {
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

func (d *dec) u32(what string) uint32 {
	if !d.need(what, 4) {
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b[d.off:])
	d.off += 4
	return v
}

func (d *dec) u64(what string) uint64 {
	if !d.need(what, 8) {
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b[d.off:])
	d.off += 8
	return v
}

func (d *dec) f64(what string) float64 { return math.Float64frombits(d.u64(what)) }

// length reads a count and checks it against max and against the bytes left (each element
// takes at least elem bytes), before anything is allocated for it.
func (d *dec) length(what string, max, elem int) int {
	n := d.u32(what)
	if d.err != nil {
		return 0
	}
	if int64(n) > int64(max) {
		d.fail(what, "length %d over the limit %d", n, max)
		return 0
	}
	if !d.need(what, int(n)*elem) {
		return 0
	}
	return int(n)
}

// f32sInto reads a float32 array that must have exactly len(dst) elements, each of size at
// most maxCheckpointValue.
func (d *dec) f32sInto(what string, dst []float32) {
	n := d.length(what, maxCheckpointFloats, 4)
	if d.err != nil {
		return
	}
	if n != len(dst) {
		d.fail(what, "has %d values, the configuration needs %d", n, len(dst))
		return
	}
	for i := range dst {
		v := math.Float32frombits(binary.LittleEndian.Uint32(d.b[d.off:]))
		d.off += 4
		if !(math.Abs(float64(v)) <= maxCheckpointValue) {
			d.fail(what, "value %d (%v) is not finite or over %g in size", i, v, maxCheckpointValue)
			return
		}
		dst[i] = v
	}
}

// end checks that every byte was consumed.
func (d *dec) end() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("end", "%d trailing bytes", len(d.b)-d.off)
	}
	return d.err
}

// header writes and checks the magic and version at the start of a checkpoint.
func (e *enc) header(magic string, version uint8) {
	e.b = append(e.b, magic...)
	e.u8(version)
}

func (d *dec) header(magic string, version uint8) {
	if !d.need("header", len(magic)+1) {
		return
	}
	if string(d.b[d.off:d.off+len(magic)]) != magic {
		d.fail("header", "not a %s checkpoint", magic)
		return
	}
	d.off += len(magic)
	if v := d.u8("version"); v != version {
		d.fail("version", "version %d, this build reads %d", v, version)
	}
}

// match checks that a configuration value stored in a checkpoint equals the model's.
func (d *dec) match(field string, got, want uint64) {
	if d.err == nil && got != want {
		d.fail(field, "checkpoint has %d, this model's Config has %d", got, want)
	}
}
