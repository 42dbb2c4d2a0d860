package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestLogCodecRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		log  raft.Log
	}{
		{"zero", raft.Log{}},
		{"all fields", *mkLog(12345)},
		{"max index and term", raft.Log{Index: ^uint64(0), Term: ^uint64(0), Type: raft.LogConfiguration}},
		{"negative unix time", raft.Log{Index: 1, AppendedAt: time.Date(1900, 1, 2, 3, 4, 5, 6, time.UTC)}},
		{"local time with monotonic reading", raft.Log{Index: 2, AppendedAt: time.Now()}},
		{"empty non-nil slices", raft.Log{Index: 3, Data: []byte{}, Extensions: []byte{}}},
		{"data at cap", raft.Log{Index: 4, Data: make([]byte, MaxLogDataSize)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := EncodeLog(&tc.log)
			if err != nil {
				t.Fatal(err)
			}
			var got raft.Log
			if err := DecodeLog(b, &got); err != nil {
				t.Fatal(err)
			}
			if !sameLog(&got, &tc.log) {
				t.Fatalf("round trip = %+v; want %+v", got, tc.log)
			}
			b2, _ := EncodeLog(&got)
			if !bytes.Equal(b, b2) {
				t.Fatal("re-encoding differs")
			}
			if len(b) > 0 && len(got.Data) > 0 {
				b[len(b)-5] ^= 1 // decoded slices must not alias the input
				if !sameLog(&got, &tc.log) {
					t.Fatal("decoded log aliases its input")
				}
			}
		})
	}
}

func TestDecodeLogRejects(t *testing.T) {
	good, err := EncodeLog(mkLog(7))
	if err != nil {
		t.Fatal(err)
	}
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	zeroTime, _ := EncodeLog(&raft.Log{Index: 1})
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformedLog},
		{"short header", good[:logHeaderSize-1], ErrMalformedLog},
		{"bad version", mut(func(b []byte) []byte { b[0] = 2; return b }), ErrMalformedLog},
		{"unknown type", mut(func(b []byte) []byte { b[17] = 6; return b }), ErrMalformedLog},
		{"time flag 2", mut(func(b []byte) []byte { b[18] = 2; return b }), ErrMalformedLog},
		{"nanoseconds over 1e9", mut(func(b []byte) []byte { binary.BigEndian.PutUint32(b[27:], 1e9); return b }), ErrMalformedLog},
		{"absent time with seconds", func() []byte {
			b := bytes.Clone(zeroTime)
			b[26] = 1
			return b
		}(), ErrMalformedLog},
		{"present zero time", func() []byte {
			b := bytes.Clone(zeroTime)
			b[18] = 1
			binary.BigEndian.PutUint64(b[19:], uint64(time.Time{}.Unix()))
			return b
		}(), ErrMalformedLog},
		{"data length past end", mut(func(b []byte) []byte { binary.BigEndian.PutUint32(b[31:], 1000); return b }), ErrMalformedLog},
		{"data length over cap", mut(func(b []byte) []byte { binary.BigEndian.PutUint32(b[31:], MaxLogDataSize+1); return b }), ErrTooLarge},
		{"extensions length over cap", mut(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[len(b)-len("ext-7")-4:], 0xffffffff)
			return b
		}), ErrTooLarge},
		{"truncated extensions", good[:len(good)-1], ErrMalformedLog},
		{"trailing byte", append(bytes.Clone(good), 0), ErrMalformedLog},
		{"input over entry cap", make([]byte, MaxLogEntrySize+1), ErrTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var l raft.Log
			if err := DecodeLog(tc.in, &l); !errors.Is(err, tc.want) {
				t.Fatalf("DecodeLog = %v; want %v", err, tc.want)
			}
		})
	}
}

func FuzzDecodeLog(f *testing.F) {
	for _, l := range []*raft.Log{{}, mkLog(1), mkLog(99), {Index: 5, Term: 3, Type: raft.LogNoop, AppendedAt: time.Unix(-5, 7)}} {
		b, err := EncodeLog(l)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{1})
	f.Add(bytes.Repeat([]byte{0xff}, logHeaderSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		var l raft.Log
		if err := DecodeLog(b, &l); err != nil {
			if !errors.Is(err, ErrMalformedLog) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		// Whatever decodes is canonical: it re-encodes to the same bytes.
		out, err := EncodeLog(&l)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("non-canonical input accepted:\n in  %x\n out %x", b, out)
		}
	})
}
