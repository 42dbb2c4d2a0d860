package wire

import (
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var w Writer
	w.Header("TEST", 3)
	w.U8(9)
	w.U32(1 << 30)
	w.I64(-5)
	w.F64(2.5)
	w.Bool(true)
	w.String("hello")
	w.F64s([]float64{1, 2})
	w.U32s([]uint32{7})
	r := NewReader(w.Bytes())
	r.Header("TEST", 3)
	if r.U8() != 9 || r.U32() != 1<<30 || r.I64() != -5 || r.F64() != 2.5 || !r.Bool() ||
		r.String("s", 10) != "hello" {
		t.Fatal("scalar round trip differs")
	}
	if xs := r.F64s("xs", 2); len(xs) != 2 || xs[1] != 2 {
		t.Fatalf("F64s = %v", xs)
	}
	if xs := r.U32s("ys", 1); len(xs) != 1 || xs[0] != 7 {
		t.Fatalf("U32s = %v", xs)
	}
	if err := r.Done(); err != nil {
		t.Fatal(err)
	}
}

func TestLimits(t *testing.T) {
	var w Writer
	w.String("toolong")
	if r := NewReader(w.Bytes()); r.String("name", 3) != "" || r.Err() == nil {
		t.Fatal("a string over its cap was accepted")
	}
	// A forged huge length with no bytes behind it is truncation, not an allocation.
	var f Writer
	f.U32(1 << 31)
	if r := NewReader(f.Bytes()); r.F64s("xs", 1<<31) != nil || !errors.Is(r.Err(), ErrTruncated) {
		t.Fatalf("forged length: err = %v", r.Err())
	}
	var h Writer
	h.Header("ABCD", 1)
	hr := NewReader(h.Bytes())
	if hr.Header("ABCD", 2); hr.Err() == nil {
		t.Fatal("wrong version accepted")
	}
	if r := NewReader([]byte{2}); r.Bool() || r.Err() == nil {
		t.Fatal("bool byte 2 accepted")
	}
	if r := NewReader([]byte{1, 2}); r.U8() != 1 || r.Done() == nil {
		t.Fatal("trailing bytes accepted")
	}
}
