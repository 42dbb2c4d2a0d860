package agentproto

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/vigil-mesh/vigil/identity"
)

// Messaging protocols (docs/agents.md). Each carries a sequence of request/answer pairs on one
// stream, so a stream is reused for many messages.
const (
	// SessionProtocol (agent → node): AttachRequest, then the node answers Registration or
	// Refusal and keeps the stream open while the agent is attached; it may write one Notice
	// (why the agent is cut off) before closing it.
	SessionProtocol protocol.ID = "/vigil/agent/session/1"
	// SendProtocol (agent → its node): Send → Receipt | MsgRefusal.
	SendProtocol protocol.ID = "/vigil/agent/send/1"
	// DeliverProtocol (node → attached agent): Deliver → Ack | MsgRefusal.
	DeliverProtocol protocol.ID = "/vigil/agent/deliver/1"
	// ReportProtocol (agent → its node): Report → Ack.
	ReportProtocol protocol.ID = "/vigil/agent/report/1"
	// RelayProtocol (node → node): Relay → Receipt | MsgRefusal.
	RelayProtocol protocol.ID = "/vigil/node/relay/1"
	// LocateProtocol (node → node): Locate → Located.
	LocateProtocol protocol.ID = "/vigil/node/locate/1"
)

// Messaging wire format: the same frame as the attach protocol (u32 length, u8 type, fields),
// with a larger cap, MaxEnvelopeSize, because a message body may be up to MaxBodySize. bytes is
// u32 length + bytes; str is u16 length + bytes; every length is checked against its cap first.
//
//	16 send      str to (≤ MaxToLen), str capability (≤ identity.MaxCapabilityLen), bytes body (≤ MaxBodySize)
//	17 receipt   str id (≤ MaxIDLen)
//	18 msgrefusal str code (≤ MaxCodeLen), str rule (≤ MaxRuleLen), u8 hop, str reason (≤ MaxReasonLen)
//	19 deliver   str id, str from, str from peer ID, str to, str capability, i64 sent (Unix ns), bytes body
//	20 ack       (nothing)
//	21 relay     str id, str from peer ID, str to peer ID, str capability, i64 sent, bytes body
//	22 report    u8 n ≤ MaxEvents, n × (str kind ≤ 32, str name ≤ 128, f64 value, i64 at,
//	             u8 m ≤ MaxEventAttrs, m × (str key ≤ 64, str value ≤ 256), keys strictly ascending)
//	23 locate    str agent peer ID
//	24 located   u8 state: 0 not attached; 2 attached and proved, then the agent's latest proof
//	             (Presence: 32-byte nonce, i64 timestamp (Unix ns), 64-byte Ed25519 signature);
//	             1 attached without a proof (the format before proofs: decoded, never believed)
//	25 notice    str code, str reason
const (
	MaxBodySize     = 64 << 10            // bytes of one message body
	MaxEnvelopeSize = MaxBodySize + 4<<10 // bytes of one messaging frame body
	MaxToLen        = 128                 // bytes of a destination (agent name or peer ID)
	MaxIDLen        = 64                  // bytes of a message ID
	MaxCodeLen      = 64                  // bytes of a refusal code
	MaxRuleLen      = 512                 // bytes of a refusal rule
	MaxEvents       = 64                  // events in one report frame
	MaxEventAttrs   = 16                  // attributes of one event
	maxKindLen      = 32
	maxEventNameLen = 128
	maxAttrKeyLen   = 64
	maxAttrValueLen = 256
)

const (
	typeSend msgType = iota + 16
	typeReceipt
	typeMsgRefusal
	typeDeliver
	typeAck
	typeRelay
	typeReport
	typeLocate
	typeLocated
	typeNotice
	typeEnd
)

// Hop says where a message was refused.
type Hop uint8

const (
	HopSenderNode   Hop = iota + 1 // the sender's node
	HopReceiverNode                // the destination's node
	HopReceiver                    // the destination agent (its handler)
	numHops
)

func (h Hop) String() string {
	switch h {
	case HopSenderNode:
		return "sender-node"
	case HopReceiverNode:
		return "receiver-node"
	case HopReceiver:
		return "receiver"
	}
	return fmt.Sprintf("Hop(%d)", uint8(h))
}

// Send asks the agent's node to deliver Body to To (an agent name or peer ID), naming Capability.
type Send struct {
	To, Capability string
	Body           []byte
}

// Receipt says the destination agent acknowledged message ID.
type Receipt struct{ ID string }

// MsgRefusal refuses a message; Code is stable (see the Code* constants in authz.go), Rule names
// the rule that refused it.
type MsgRefusal struct {
	Code, Rule string
	Hop        Hop
	Reason     string
}

// Deliver hands a message to the destination agent.
type Deliver struct {
	ID, From   string
	FromID     peer.ID
	To         string
	Capability string
	SentAt     time.Time
	Body       []byte
}

// Ack acknowledges a Deliver or a Report.
type Ack struct{}

// Relay carries a message from the sender's node to the destination's node. It names agents by
// peer ID only: the receiving node takes names, labels and capabilities from its own replica.
type Relay struct {
	ID         string
	From, To   peer.ID
	Capability string
	SentAt     time.Time
	Body       []byte
}

// Event is one event an agent reports.
type Event struct {
	Kind, Name string
	Value      float64
	At         time.Time
	Attrs      map[string]string
}

// Report carries events from an agent to its node.
type Report struct{ Events []Event }

// Locate asks a node whether Agent is attached to it.
type Locate struct{ Agent peer.ID }

// Located answers a Locate. A node says Attached only with the agent's Proof that it holds a
// session there; an answer in the format before proofs says Attached with a nil Proof, which
// proves nothing (the Router treats it as "not attached").
type Located struct {
	Attached bool
	Proof    *Presence // encoded only with Attached
}

// Located states on the wire.
const (
	locatedNo       = 0
	locatedUnproved = 1 // the format before proofs
	locatedProved   = 2
)

// Notice tells an attached agent why its node is about to close its session.
type Notice struct{ Code, Reason string }

func (*Send) msgType() msgType       { return typeSend }
func (*Receipt) msgType() msgType    { return typeReceipt }
func (*MsgRefusal) msgType() msgType { return typeMsgRefusal }
func (*Deliver) msgType() msgType    { return typeDeliver }
func (*Ack) msgType() msgType        { return typeAck }
func (*Relay) msgType() msgType      { return typeRelay }
func (*Report) msgType() msgType     { return typeReport }
func (*Locate) msgType() msgType     { return typeLocate }
func (*Located) msgType() msgType    { return typeLocated }
func (*Notice) msgType() msgType     { return typeNotice }

// EncodeEnvelope returns the body of any message (attach or messaging), without frame length.
func EncodeEnvelope(m Message) []byte {
	if m.msgType() < typeSend {
		return Encode(m)
	}
	b := []byte{byte(m.msgType())}
	str := func(s string) {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	bytes := func(p []byte) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	i64 := func(t time.Time) { b = binary.BigEndian.AppendUint64(b, uint64(t.UnixNano())) }
	switch m := m.(type) {
	case *Send:
		str(m.To)
		str(m.Capability)
		bytes(m.Body)
	case *Receipt:
		str(m.ID)
	case *MsgRefusal:
		str(m.Code)
		str(m.Rule)
		b = append(b, byte(m.Hop))
		str(m.Reason)
	case *Deliver:
		str(m.ID)
		str(m.From)
		str(string(m.FromID))
		str(m.To)
		str(m.Capability)
		i64(m.SentAt)
		bytes(m.Body)
	case *Ack:
	case *Relay:
		str(m.ID)
		str(string(m.From))
		str(string(m.To))
		str(m.Capability)
		i64(m.SentAt)
		bytes(m.Body)
	case *Report:
		b = append(b, byte(len(m.Events)))
		for _, e := range m.Events {
			str(e.Kind)
			str(e.Name)
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(e.Value))
			i64(e.At)
			keys := sortedKeys(e.Attrs)
			b = append(b, byte(len(keys)))
			for _, k := range keys {
				str(k)
				str(e.Attrs[k])
			}
		}
	case *Locate:
		str(string(m.Agent))
	case *Located:
		switch {
		case !m.Attached:
			b = append(b, locatedNo)
		case m.Proof == nil:
			b = append(b, locatedUnproved)
		default:
			b = append(b, locatedProved)
			b = append(b, m.Proof.Nonce[:]...)
			i64(m.Proof.Timestamp)
			b = append(b, m.Proof.Signature[:]...)
		}
	case *Notice:
		str(m.Code)
		str(m.Reason)
	}
	return b
}

// WriteEnvelope writes one frame of any message, refusing a body larger than MaxEnvelopeSize
// (MaxMessageSize for the attach messages).
func WriteEnvelope(w io.Writer, m Message) error {
	body := EncodeEnvelope(m)
	limit := MaxEnvelopeSize
	if m.msgType() < typeSend {
		limit = MaxMessageSize
	}
	if len(body) > limit {
		return fmt.Errorf("agentproto: write: %d bytes: %w", len(body), ErrTooLarge)
	}
	frame := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(body)), uint32(len(body)))
	_, err := w.Write(append(frame, body...))
	return err
}

// ReadEnvelope reads one frame of any message, checking its length against MaxEnvelopeSize
// before allocating, and decodes it strictly (DecodeEnvelope).
func ReadEnvelope(r io.Reader) (Message, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, fmt.Errorf("agentproto: read: %w", err)
	}
	n := binary.BigEndian.Uint32(h[:])
	if n > MaxEnvelopeSize {
		return nil, fmt.Errorf("agentproto: read: frame of %d bytes: %w: %w", n, ErrTooLarge, ErrMalformed)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("agentproto: read: %w", err)
	}
	return DecodeEnvelope(body)
}

func (d *decoder) bytes(field string, limit int) []byte {
	b := d.take(4)
	if b == nil {
		return nil
	}
	n := binary.BigEndian.Uint32(b)
	if n > uint32(limit) {
		d.tooLarge(field+" bytes", int(min(n, math.MaxInt32)), limit)
		return nil
	}
	return append([]byte(nil), d.take(int(n))...)
}

func (d *decoder) time() time.Time { return time.Unix(0, int64(d.u64())).UTC() }

func (d *decoder) peerID(field string) peer.ID {
	p := peer.ID(d.str(field, maxPeerIDLen))
	if d.err == nil {
		if _, err := identity.IDFromPeer(p); err != nil {
			d.fail("%s: %v", field, err)
		}
	}
	return p
}

// DecodeEnvelope parses one message body of any type strictly: known type, every field within
// its cap, no trailing bytes. Attach-protocol types are decoded by Decode.
func DecodeEnvelope(b []byte) (Message, error) {
	if len(b) > 0 && msgType(b[0]) < typeSend {
		return Decode(b)
	}
	if len(b) > MaxEnvelopeSize {
		return nil, fmt.Errorf("agentproto: decode: %d bytes: %w: %w", len(b), ErrTooLarge, ErrMalformed)
	}
	d := &decoder{b: b}
	var m Message
	switch t := msgType(d.u8()); t {
	case typeSend:
		s := &Send{}
		s.To = d.str("to", MaxToLen)
		s.Capability = d.str("capability", identity.MaxCapabilityLen)
		s.Body = d.bytes("body", MaxBodySize)
		m = s
	case typeReceipt:
		m = &Receipt{ID: d.str("id", MaxIDLen)}
	case typeMsgRefusal:
		r := &MsgRefusal{}
		r.Code = d.str("code", MaxCodeLen)
		r.Rule = d.str("rule", MaxRuleLen)
		r.Hop = Hop(d.u8())
		r.Reason = d.str("reason", MaxReasonLen)
		if d.err == nil && (r.Hop == 0 || r.Hop >= numHops) {
			d.fail("hop %d", r.Hop)
		}
		if d.err == nil && r.Code == "" {
			d.fail("empty refusal code")
		}
		m = r
	case typeDeliver:
		x := &Deliver{}
		x.ID = d.str("id", MaxIDLen)
		x.From = d.str("from", identity.MaxNameLen)
		x.FromID = d.peerID("from id")
		x.To = d.str("to", identity.MaxNameLen)
		x.Capability = d.str("capability", identity.MaxCapabilityLen)
		x.SentAt = d.time()
		x.Body = d.bytes("body", MaxBodySize)
		m = x
	case typeAck:
		m = &Ack{}
	case typeRelay:
		x := &Relay{}
		x.ID = d.str("id", MaxIDLen)
		x.From = d.peerID("from")
		x.To = d.peerID("to")
		x.Capability = d.str("capability", identity.MaxCapabilityLen)
		x.SentAt = d.time()
		x.Body = d.bytes("body", MaxBodySize)
		m = x
	case typeReport:
		m = d.report()
	case typeLocate:
		m = &Locate{Agent: d.peerID("agent")}
	case typeLocated:
		m = d.located()
	case typeNotice:
		n := &Notice{}
		n.Code = d.str("code", MaxCodeLen)
		n.Reason = d.str("reason", MaxReasonLen)
		m = n
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

func (d *decoder) located() *Located {
	l := &Located{}
	switch st := d.u8(); {
	case d.err != nil, st == locatedNo:
	case st == locatedUnproved:
		l.Attached = true
	case st == locatedProved:
		pr := &Presence{}
		copy(pr.Nonce[:], d.fixed("located proof nonce", NonceSize))
		if ts := d.fixed("located proof timestamp", 8); ts != nil {
			pr.Timestamp = time.Unix(0, int64(binary.BigEndian.Uint64(ts))).UTC()
		}
		copy(pr.Signature[:], d.fixed("located proof signature", SignatureSize))
		l.Attached, l.Proof = true, pr
	default:
		d.fail("located state %d", st)
	}
	return l
}

// fixed reads a field of exactly n bytes, naming it when it is cut short.
func (d *decoder) fixed(field string, n int) []byte {
	if d.err == nil && len(d.b) < n {
		d.fail("%s: %d of %d bytes", field, len(d.b), n)
	}
	return d.take(n)
}

func (d *decoder) report() *Report {
	r := &Report{}
	n := int(d.u8())
	if n > MaxEvents {
		d.tooLarge("events", n, MaxEvents)
	}
	for i := 0; i < n && d.err == nil; i++ {
		e := Event{}
		e.Kind = d.str("event kind", maxKindLen)
		e.Name = d.str("event name", maxEventNameLen)
		e.Value = math.Float64frombits(d.u64())
		e.At = d.time()
		m := int(d.u8())
		if m > MaxEventAttrs {
			d.tooLarge("event attrs", m, MaxEventAttrs)
		}
		prev := ""
		for j := 0; j < m && d.err == nil; j++ {
			k := d.str("attr key", maxAttrKeyLen)
			v := d.str("attr value", maxAttrValueLen)
			if d.err == nil && (k == "" || (j > 0 && k <= prev)) {
				d.fail("attr keys not strictly ascending at %q", k)
			}
			if e.Attrs == nil {
				e.Attrs = make(map[string]string, m)
			}
			e.Attrs[k], prev = v, k
		}
		if d.err == nil && e.Kind == "" {
			d.fail("event %d: empty kind", i)
		}
		r.Events = append(r.Events, e)
	}
	return r
}
