package agentproto

import (
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/vigil-mesh/vigil/identity"
)

// Protocols.
const (
	AttachProtocol   protocol.ID = "/vigil/agent/1"
	ReverifyProtocol protocol.ID = "/vigil/agent/reverify/1"
)

// Wire format. Every message is one frame: u32 big-endian length (≤ MaxMessageSize), then the
// body: u8 type, then the fields below. Integers are big-endian; str is u16 length + bytes; each
// length is checked against its cap before anything is allocated; no trailing bytes; label keys
// and capabilities strictly ascending, so every message has exactly one encoding.
//
//	1 attach     u8 version (1)
//	2 registration u8 status, str name, str spiffe, i64 expires (Unix ns), u64 reverify interval (ns),
//	             u8 n ≤ MaxLabels, n × (str key, str value), u8 m ≤ MaxCapabilities, m × str
//	3 refusal    u8 code, str reason (≤ MaxReasonLen)
//	4 challenge  32-byte nonce, i64 timestamp (Unix ns), str node peer ID (Ed25519, ≤ 64 bytes)
//	5 proof      64-byte Ed25519 signature
const (
	MaxMessageSize = 32 << 10 // bytes of one frame body; a full registration is ≈ 15 KiB
	MaxReasonLen   = 1024     // bytes of a refusal reason
	NonceSize      = 32
	SignatureSize  = 64
	maxPeerIDLen   = 64
	attachVersion  = 1
)

// ReverifyDomain prefixes every re-verification signature, so it can never be mistaken for
// another signature made with an agent key.
const ReverifyDomain = "vigil/reverify/v1\x00"

type msgType uint8

const (
	typeAttach msgType = iota + 1
	typeRegistration
	typeRefusal
	typeChallenge
	typeProof
)

// Message is one of *AttachRequest, *Registration, *Refusal, *Challenge, *Proof.
type Message interface{ msgType() msgType }

// AttachRequest asks the node for the caller's registration. The caller is the peer of the
// secure channel; the request carries nothing else.
type AttachRequest struct{ Version uint8 }

// Registration is the node's answer to an admitted agent.
type Registration struct {
	Name             string
	SPIFFE           identity.SPIFFEID
	Labels           map[string]string
	Capabilities     []string // sorted
	Status           identity.Status
	ExpiresAt        time.Time
	ReverifyInterval time.Duration // how often the node will challenge the agent
}

// Code is why the node refused an attach.
type Code uint8

const (
	CodeUnknown     Code = iota + 1 // the key is not a registered agent
	CodeNotAgent                    // the key is a node or operator
	CodeRevoked                     // the agent is revoked
	CodeQuarantined                 // the agent is quarantined
	CodeExpired                     // the registration expired
	CodeUnavailable                 // the node has no registry view yet
	CodeBadRequest                  // the request was malformed
	numCodes
)

var codeErrs = [numCodes]error{nil, ErrUnknownAgent, ErrNotAgent, ErrRevoked, ErrQuarantined, ErrExpired,
	ErrUnavailable, ErrBadRequest}

// Err returns the sentinel for the code.
func (c Code) Err() error {
	if c == 0 || c >= numCodes {
		return ErrMalformed
	}
	return codeErrs[c]
}

func (c Code) String() string { return c.Err().Error() }

// Refusal is the node's answer to an agent it will not serve.
type Refusal struct {
	Code   Code
	Reason string
}

// Challenge asks the agent to prove it holds its key, bound to this node and this moment.
type Challenge struct {
	Nonce     [NonceSize]byte
	Timestamp time.Time
	Node      peer.ID
}

// Proof is the agent's signature over ReverifyBytes.
type Proof struct{ Signature [SignatureSize]byte }

func (*AttachRequest) msgType() msgType { return typeAttach }
func (*Registration) msgType() msgType  { return typeRegistration }
func (*Refusal) msgType() msgType       { return typeRefusal }
func (*Challenge) msgType() msgType     { return typeChallenge }
func (*Proof) msgType() msgType         { return typeProof }

// ReverifyBytes is what the agent signs: ReverifyDomain || nonce || node ID || agent ID ||
// timestamp (i64 Unix ns, big-endian). Both IDs are Ed25519 identity peer IDs (38 bytes), so the
// concatenation is unambiguous.
func ReverifyBytes(nonce [NonceSize]byte, node, agent peer.ID, ts time.Time) []byte {
	b := make([]byte, 0, len(ReverifyDomain)+NonceSize+len(node)+len(agent)+8)
	b = append(b, ReverifyDomain...)
	b = append(b, nonce[:]...)
	b = append(b, node...)
	b = append(b, agent...)
	return binary.BigEndian.AppendUint64(b, uint64(ts.UnixNano()))
}

// Encode returns the body of m (no frame length).
func Encode(m Message) []byte {
	b := []byte{byte(m.msgType())}
	str := func(s string) []byte {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		return append(b, s...)
	}
	switch m := m.(type) {
	case *AttachRequest:
		b = append(b, m.Version)
	case *Registration:
		b = append(b, byte(m.Status))
		b = str(m.Name)
		b = str(m.SPIFFE.String())
		b = binary.BigEndian.AppendUint64(b, uint64(m.ExpiresAt.UnixNano()))
		b = binary.BigEndian.AppendUint64(b, uint64(m.ReverifyInterval))
		keys := sortedKeys(m.Labels)
		b = append(b, byte(len(keys)))
		for _, k := range keys {
			b = str(k)
			b = str(m.Labels[k])
		}
		b = append(b, byte(len(m.Capabilities)))
		for _, c := range m.Capabilities {
			b = str(c)
		}
	case *Refusal:
		b = append(b, byte(m.Code))
		b = str(m.Reason)
	case *Challenge:
		b = append(b, m.Nonce[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(m.Timestamp.UnixNano()))
		b = str(string(m.Node))
	case *Proof:
		b = append(b, m.Signature[:]...)
	}
	return b
}

// WriteMessage writes one frame. It refuses to send a body larger than MaxMessageSize.
func WriteMessage(w io.Writer, m Message) error {
	body := Encode(m)
	if len(body) > MaxMessageSize {
		return fmt.Errorf("agentproto: write: %d bytes: %w", len(body), ErrTooLarge)
	}
	frame := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(body)), uint32(len(body)))
	_, err := w.Write(append(frame, body...))
	return err
}

// ReadMessage reads one frame, checking its length against MaxMessageSize before allocating,
// and decodes it strictly.
func ReadMessage(r io.Reader) (Message, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, fmt.Errorf("agentproto: read: %w", err)
	}
	n := binary.BigEndian.Uint32(h[:])
	if n > MaxMessageSize {
		return nil, fmt.Errorf("agentproto: read: frame of %d bytes: %w: %w", n, ErrTooLarge, ErrMalformed)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("agentproto: read: %w", err)
	}
	return Decode(body)
}

// decoder reads fields; the first failure sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("agentproto: decode: "+format+": %w", append(args, ErrMalformed)...)
	}
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.fail("truncated")
		return nil
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) u8() uint8 {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if b := d.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// tooLarge records a cap violation (it wraps ErrTooLarge and ErrMalformed).
func (d *decoder) tooLarge(field string, n, limit int) {
	if d.err == nil {
		d.err = fmt.Errorf("agentproto: decode: %s: %d > %d: %w: %w", field, n, limit, ErrTooLarge, ErrMalformed)
	}
}

func (d *decoder) str(field string, limit int) string {
	b := d.take(2)
	if b == nil {
		return ""
	}
	n := int(binary.BigEndian.Uint16(b))
	if n > limit {
		d.tooLarge(field+" bytes", n, limit)
		return ""
	}
	return string(d.take(n))
}

// Decode parses one message body strictly: known type, every field within its cap, keys and
// capabilities strictly ascending, valid names and IDs, no trailing bytes.
func Decode(b []byte) (Message, error) {
	if len(b) > MaxMessageSize {
		return nil, fmt.Errorf("agentproto: decode: %d bytes: %w: %w", len(b), ErrTooLarge, ErrMalformed)
	}
	d := &decoder{b: b}
	var m Message
	switch t := msgType(d.u8()); t {
	case typeAttach:
		v := d.u8()
		if d.err == nil && v != attachVersion {
			d.fail("attach version %d", v)
		}
		m = &AttachRequest{Version: v}
	case typeRegistration:
		m = d.registration()
	case typeRefusal:
		c := Code(d.u8())
		reason := d.str("reason", MaxReasonLen)
		if d.err == nil && (c == 0 || c >= numCodes) {
			d.fail("refusal code %d", c)
		}
		m = &Refusal{Code: c, Reason: reason}
	case typeChallenge:
		c := &Challenge{}
		copy(c.Nonce[:], d.take(NonceSize))
		c.Timestamp = time.Unix(0, int64(d.u64())).UTC()
		c.Node = peer.ID(d.str("node", maxPeerIDLen))
		if d.err == nil {
			if _, err := identity.IDFromPeer(c.Node); err != nil {
				d.fail("node id: %v", err)
			}
		}
		m = c
	case typeProof:
		p := &Proof{}
		copy(p.Signature[:], d.take(SignatureSize))
		m = p
	default:
		d.fail("unknown message type %d", t)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return m, nil
}

func (d *decoder) registration() *Registration {
	r := &Registration{Status: identity.Status(d.u8())}
	r.Name = d.str("name", identity.MaxNameLen)
	spiffe := d.str("spiffe", identity.MaxSPIFFELen)
	r.ExpiresAt = time.Unix(0, int64(d.u64())).UTC()
	iv := d.u64()
	if iv > math.MaxInt64 {
		d.fail("reverify interval overflows")
	}
	r.ReverifyInterval = time.Duration(iv)
	n := int(d.u8())
	if n > identity.MaxLabels {
		d.tooLarge("labels", n, identity.MaxLabels)
	}
	prev := ""
	for i := 0; i < n && d.err == nil; i++ {
		k := d.str("label key", identity.MaxLabelKeyLen)
		v := d.str("label value", identity.MaxLabelValueLen)
		if d.err == nil && (k == "" || (i > 0 && k <= prev)) {
			d.fail("label keys not strictly ascending at %q", k)
		}
		if r.Labels == nil {
			r.Labels = make(map[string]string, n)
		}
		r.Labels[k], prev = v, k
	}
	m := int(d.u8())
	if m > identity.MaxCapabilities {
		d.tooLarge("capabilities", m, identity.MaxCapabilities)
	}
	for i := 0; i < m && d.err == nil; i++ {
		c := d.str("capability", identity.MaxCapabilityLen)
		if d.err == nil && (c == "" || (i > 0 && c <= r.Capabilities[i-1])) {
			d.fail("capabilities not strictly ascending at %q", c)
		}
		r.Capabilities = append(r.Capabilities, c)
	}
	if d.err != nil {
		return r
	}
	if r.Status < identity.StatusActive || r.Status > identity.StatusExpired {
		d.fail("status %d", r.Status)
	}
	if err := identity.ValidateName(r.Name); err != nil {
		d.fail("name: %v", err)
	}
	if s, err := identity.ParseSPIFFEID(spiffe); err != nil {
		d.fail("spiffe: %v", err)
	} else {
		r.SPIFFE = s
		if s.String() != spiffe {
			d.fail("spiffe: not canonical")
		}
	}
	return r
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
