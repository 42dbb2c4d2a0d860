package gossip

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"time"

	"github.com/vigil-mesh/vigil/identity"
)

// MsgType is the type of a gossiped payload.
type MsgType uint8

const (
	// MsgSignal carries one identity.Signal (its canonical encoding); the envelope's reporter
	// and nonce must be the signal's.
	MsgSignal MsgType = 1
	// MsgRevocation carries one committed revocation command (identity.Command.Encode() of a
	// RevokeAgent or AutoRevokeAgent), relayed by any admitted node.
	MsgRevocation MsgType = 2
)

func (t MsgType) String() string {
	switch t {
	case MsgSignal:
		return "signal"
	case MsgRevocation:
		return "revocation"
	}
	return "unknown"
}

// maxBody returns the body cap of a type, 0 for an unknown type.
func (t MsgType) maxBody() int {
	switch t {
	case MsgSignal:
		return identity.MaxSignalSize
	case MsgRevocation:
		return identity.MaxCommandSize
	}
	return 0
}

const (
	envelopeVersion = 1
	envelopeDomain  = "vigil/gossip/v1\x00"
	// envelopeHeader is version, type, reporter, nonce, issued_at, expires.
	envelopeHeader = 1 + 1 + 32 + 16 + 8 + 8
	// MaxEnvelopeSize bounds one encoded envelope (the largest body is a command).
	MaxEnvelopeSize = envelopeHeader + binary.MaxVarintLen32 + identity.MaxCommandSize + ed25519.SignatureSize
)

// Envelope is the signed wrapper of every gossiped payload. memberlist's shared key only hides
// traffic; the envelope proves which admitted node sent it, when, and for how long it counts.
type Envelope struct {
	Type     MsgType
	Reporter identity.PublicKey // the node that signed the envelope
	Nonce    [16]byte
	IssuedAt time.Time
	Expires  time.Time
	Body     []byte
	Sig      []byte // Ed25519 by Reporter over signingBytes(cluster)
}

// putTime writes Unix nanoseconds; the zero time is math.MinInt64 (as in identity's encoding),
// so that every decoded time encodes back to the same bytes.
func putTime(b []byte, t time.Time) []byte {
	n := int64(math.MinInt64)
	if !t.IsZero() {
		n = t.UnixNano()
	}
	return binary.BigEndian.AppendUint64(b, uint64(n))
}

func (e *Envelope) appendBody(b []byte) []byte {
	b = append(b, envelopeVersion, byte(e.Type))
	b = append(b, e.Reporter.Bytes()...)
	b = append(b, e.Nonce[:]...)
	b = putTime(b, e.IssuedAt)
	b = putTime(b, e.Expires)
	b = binary.AppendUvarint(b, uint64(len(e.Body)))
	return append(b, e.Body...)
}

// signingBytes binds the envelope to one cluster: an envelope from another cluster, even signed
// by the same key, does not verify here.
func (e *Envelope) signingBytes(cluster identity.ClusterID) []byte {
	b := make([]byte, 0, len(envelopeDomain)+16+envelopeHeader+binary.MaxVarintLen32+len(e.Body))
	b = append(b, envelopeDomain...)
	b = append(b, cluster[:]...)
	return e.appendBody(b)
}

// Encode returns the wire form: body then the 64-byte signature.
func (e *Envelope) Encode() []byte {
	b := e.appendBody(make([]byte, 0, envelopeHeader+binary.MaxVarintLen32+len(e.Body)+ed25519.SignatureSize))
	var sig [ed25519.SignatureSize]byte
	copy(sig[:], e.Sig)
	return append(b, sig[:]...)
}

// sign fills Sig.
func (e *Envelope) sign(cluster identity.ClusterID, k identity.PrivateKey) {
	e.Reporter = k.Public()
	e.Sig = k.Sign(e.signingBytes(cluster))
}

// verify checks the signature only.
func (e *Envelope) verify(cluster identity.ClusterID) error {
	if !e.Reporter.Verify(e.signingBytes(cluster), e.Sig) {
		return errf(ErrBadSignature, "%s envelope from %s", e.Type, e.Reporter.ID())
	}
	return nil
}

// DecodeEnvelope decodes strictly: the total length is checked against MaxEnvelopeSize and the
// body length against the type's cap before anything is allocated; a minimal uvarint; no
// trailing bytes. The returned Body aliases nothing in b.
func DecodeEnvelope(b []byte) (*Envelope, error) {
	if len(b) > MaxEnvelopeSize {
		return nil, errf(ErrTooLarge, "envelope: %d bytes, max %d", len(b), MaxEnvelopeSize)
	}
	if len(b) < envelopeHeader+1+ed25519.SignatureSize {
		return nil, errf(ErrMalformed, "envelope: %d bytes is shorter than any envelope", len(b))
	}
	if b[0] != envelopeVersion {
		return nil, errf(ErrMalformed, "envelope: unknown version %d", b[0])
	}
	e := &Envelope{Type: MsgType(b[1])}
	max := e.Type.maxBody()
	if max == 0 {
		return nil, errf(ErrMalformed, "envelope: unknown type %d", b[1])
	}
	k, err := identity.ParsePublicKey(b[2:34])
	if err != nil {
		return nil, errf(ErrMalformed, "envelope: reporter: %v", err)
	}
	e.Reporter = k
	copy(e.Nonce[:], b[34:50])
	e.IssuedAt = timeFromWire(b[50:58])
	e.Expires = timeFromWire(b[58:66])
	rest := b[envelopeHeader:]
	n, w := binary.Uvarint(rest)
	if w <= 0 || (w > 1 && rest[w-1] == 0) {
		return nil, errf(ErrMalformed, "envelope: bad body length")
	}
	if n > uint64(max) {
		return nil, errf(ErrTooLarge, "envelope: %s body of %d bytes, max %d", e.Type, n, max)
	}
	rest = rest[w:]
	if uint64(len(rest)) != n+ed25519.SignatureSize {
		return nil, errf(ErrMalformed, "envelope: body length %d does not match %d remaining bytes", n, len(rest))
	}
	e.Body = append([]byte(nil), rest[:n]...)
	e.Sig = append([]byte(nil), rest[n:]...)
	return e, nil
}

func timeFromWire(p []byte) time.Time {
	n := int64(binary.BigEndian.Uint64(p))
	if n == math.MinInt64 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// dedupeKey identifies one payload for replay protection: for a signal the (reporter, subject,
// nonce) triple; for a revocation the command's digest alone, so that the same committed
// command relayed by many nodes counts once.
type dedupeKey [32]byte

func signalKey(s *identity.Signal) dedupeKey {
	h := sha256.New()
	h.Write([]byte{byte(MsgSignal)})
	h.Write(s.Reporter.Bytes())
	h.Write([]byte{byte(len(s.Subject.Name))})
	h.Write([]byte(s.Subject.Name))
	h.Write(s.Subject.Key.Bytes())
	h.Write(s.Nonce[:])
	var k dedupeKey
	h.Sum(k[:0])
	return k
}

func revocationKey(cmd []byte) dedupeKey {
	h := sha256.New()
	h.Write([]byte{byte(MsgRevocation)})
	h.Write(cmd)
	var k dedupeKey
	h.Sum(k[:0])
	return k
}
