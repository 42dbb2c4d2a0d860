package consensus

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/vigil-mesh/vigil/identity"
)

// Wire format of the three node-to-node protocols. Every field is a fixed-size integer
// (big-endian) or a length-prefixed byte string whose length is checked against a cap before
// anything is allocated. One request and one response per stream.
//
//	propose   request:  u32 len, command bytes (len ≤ identity.MaxCommandSize)
//	          response: result
//	readindex request:  u8 version (1)
//	          response: result (Index = the leader's verified commit index)
//	join      request:  16-byte cluster id
//	          response: result (Index = the answerer's applied index), leader (str),
//	                    u16 n ≤ maxJoinNodes, n × {id (str), u8 k ≤ maxJoinAddrs, k × addr (str)}
//	result:   u64 index, code (str ≤ maxCodeLen), detail (str ≤ maxDetailLen)
//	str:      u16 len, bytes
const (
	maxCodeLen    = 64
	maxDetailLen  = 2048
	maxPeerIDLen  = 128
	maxJoinNodes  = identity.MaxNodes
	maxJoinAddrs  = 16
	readIndexWire = 1
)

// wireResult is the common response head.
type wireResult struct {
	Index  uint64
	Code   string
	Detail string
}

func resultFor(index uint64, err error) wireResult {
	r := wireResult{Index: index, Code: codeOf(err)}
	if err != nil {
		r.Detail = truncate(err.Error(), maxDetailLen)
	}
	return r
}

// Err rebuilds the error the peer reported.
func (r wireResult) Err() error { return errorForCode(r.Code, r.Detail) }

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// joinNode is one admitted node in a join response.
type joinNode struct {
	ID    string
	Addrs []string
}

type joinResponse struct {
	Result wireResult
	Leader string
	Nodes  []joinNode
}

// encoder appends fields to a buffer. Strings longer than their cap are truncated by callers.
type encoder struct{ b []byte }

func (e *encoder) u8(v uint8)   { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16) { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) str(s string) {
	s = truncate(s, 0xffff)
	e.u16(uint16(len(s)))
	e.b = append(e.b, s...)
}
func (e *encoder) result(r wireResult) {
	e.u64(r.Index)
	e.str(truncate(r.Code, maxCodeLen))
	e.str(truncate(r.Detail, maxDetailLen))
}

// decoder reads fields from r; the first error sticks and later reads return zero values.
type decoder struct {
	r   io.Reader
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = errf(ErrProtocol, format, args...)
	}
}

func (d *decoder) read(n int) []byte {
	if d.err != nil {
		return nil
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(d.r, b); err != nil {
		d.fail("read %d bytes: %v", n, err)
		return nil
	}
	return b
}

func (d *decoder) u8() uint8 {
	if b := d.read(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if b := d.read(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if b := d.read(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if b := d.read(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// str reads a u16-prefixed string of at most max bytes; the length is checked first.
func (d *decoder) str(field string, max int) string {
	n := int(d.u16())
	if d.err != nil {
		return ""
	}
	if n > max {
		d.fail("%s: %d bytes exceeds %d", field, n, max)
		return ""
	}
	return string(d.read(n))
}

func (d *decoder) result() wireResult {
	return wireResult{Index: d.u64(), Code: d.str("code", maxCodeLen), Detail: d.str("detail", maxDetailLen)}
}

// end checks that nothing follows the message.
func (d *decoder) end() error {
	if d.err != nil {
		return d.err
	}
	var b [1]byte
	if n, _ := d.r.Read(b[:]); n != 0 {
		return errf(ErrProtocol, "trailing bytes")
	}
	return nil
}

func encodeProposeRequest(cmd []byte) []byte {
	e := encoder{b: make([]byte, 0, 4+len(cmd))}
	e.u32(uint32(len(cmd)))
	e.b = append(e.b, cmd...)
	return e.b
}

// decodeProposeRequest reads the command bytes; the cap is checked before allocation.
func decodeProposeRequest(r io.Reader) ([]byte, error) {
	d := decoder{r: r}
	n := d.u32()
	if d.err == nil && n > identity.MaxCommandSize {
		return nil, fmt.Errorf("consensus: command of %d bytes exceeds %d: %w: %w", n, identity.MaxCommandSize, ErrProtocol, identity.ErrTooLarge)
	}
	b := d.read(int(n))
	return b, d.end()
}

func encodeResult(r wireResult) []byte {
	var e encoder
	e.result(r)
	return e.b
}

func decodeResult(r io.Reader) (wireResult, error) {
	d := decoder{r: r}
	res := d.result()
	return res, d.end()
}

func encodeJoinResponse(j joinResponse) []byte {
	var e encoder
	e.result(j.Result)
	e.str(truncate(j.Leader, maxPeerIDLen))
	nodes := j.Nodes[:min(len(j.Nodes), maxJoinNodes)]
	e.u16(uint16(len(nodes)))
	for _, n := range nodes {
		e.str(truncate(n.ID, maxPeerIDLen))
		addrs := n.Addrs[:min(len(n.Addrs), maxJoinAddrs)]
		e.u8(uint8(len(addrs)))
		for _, a := range addrs {
			e.str(truncate(a, identity.MaxAddrLen))
		}
	}
	return e.b
}

func decodeJoinResponse(r io.Reader) (joinResponse, error) {
	d := decoder{r: r}
	var j joinResponse
	j.Result = d.result()
	j.Leader = d.str("leader", maxPeerIDLen)
	n := int(d.u16())
	if n > maxJoinNodes {
		d.fail("join: %d nodes exceeds %d", n, maxJoinNodes)
	}
	for i := 0; i < n && d.err == nil; i++ {
		jn := joinNode{ID: d.str("node id", maxPeerIDLen)}
		k := int(d.u8())
		if k > maxJoinAddrs {
			d.fail("join: %d addrs exceeds %d", k, maxJoinAddrs)
		}
		for a := 0; a < k && d.err == nil; a++ {
			jn.Addrs = append(jn.Addrs, d.str("addr", identity.MaxAddrLen))
		}
		j.Nodes = append(j.Nodes, jn)
	}
	return j, d.end()
}
