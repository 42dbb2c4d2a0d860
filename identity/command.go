package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"io"
	"slices"
	"time"
)

// commandVersion is the first byte of every encoded command.
const commandVersion = 1

// signingDomain separates command signatures from every other use of the same keys.
const signingDomain = "vigil/command/v1\x00"

// Signature is one signer's Ed25519 signature over Command.SigningBytes().
type Signature struct {
	Signer PublicKey
	Sig    []byte
}

// Command is a signed change to the registry.
type Command struct {
	ClusterID  ClusterID
	Kind       Kind
	Payload    []byte // canonical encoding of the payload (EncodePayload)
	IssuedAt   time.Time
	Nonce      [16]byte
	Signatures []Signature
}

// NewCommand builds an unsigned command for p with a random nonce from rand. It refuses payloads
// that would not survive decoding (caps, invalid UTF-8, unrepresentable times).
func NewCommand(cluster ClusterID, p Payload, issuedAt time.Time, rand io.Reader) (*Command, error) {
	if p == nil || !p.Kind().valid() {
		return nil, errf(ErrInvalid, "payload: nil or unknown kind")
	}
	if issuedAt.IsZero() || !timeRepresentable(issuedAt) {
		return nil, invalidf("issued_at", "zero or outside the representable range")
	}
	for _, t := range payloadTimes(p) {
		if !timeRepresentable(t) {
			return nil, invalidf("expires_at", "outside the representable range (years 1678..2262)")
		}
	}
	if t, ok := p.(*SetThreshold); ok && t.Threshold < 0 {
		return nil, invalidf("threshold", "negative")
	}
	if q, ok := p.(*SetRevokeQuorum); ok && q.Quorum < 0 {
		return nil, invalidf("quorum", "negative")
	}
	if g, ok := p.(*Genesis); ok && g.Threshold < 0 {
		return nil, invalidf("threshold", "negative")
	}
	enc := EncodePayload(p)
	if _, err := DecodePayload(p.Kind(), enc); err != nil {
		return nil, err
	}
	c := &Command{ClusterID: cluster, Kind: p.Kind(), Payload: enc, IssuedAt: issuedAt.UTC()}
	if _, err := io.ReadFull(rand, c.Nonce[:]); err != nil {
		return nil, fmt.Errorf("identity: new command nonce: %w", err)
	}
	if len(c.Encode())+MaxSignatures*(ed25519.PublicKeySize+1+ed25519.SignatureSize) > MaxCommandSize {
		return nil, tooLargef("command: payload of %d bytes leaves no room for signatures", len(enc))
	}
	return c, nil
}

func payloadTimes(p Payload) []time.Time {
	switch p := p.(type) {
	case *RegisterAgent:
		return []time.Time{p.ExpiresAt}
	case *RenewAgent:
		return []time.Time{p.ExpiresAt}
	case *ReinstateAgent:
		return []time.Time{p.ExpiresAt}
	}
	return nil
}

// Sign appends k's signature over SigningBytes().
func (c *Command) Sign(k PrivateKey) {
	c.Signatures = append(c.Signatures, Signature{Signer: k.Public(), Sig: k.Sign(c.SigningBytes())})
}

func (c *Command) encodeBody(e *encoder) {
	e.u8(commandVersion)
	e.raw(c.ClusterID[:])
	e.u8(uint8(c.Kind))
	e.bytes(c.Payload)
	e.time(c.IssuedAt)
	e.raw(c.Nonce[:])
}

// SigningBytes returns "vigil/command/v1\x00" followed by the canonical encoding without the
// signatures: what every signer signs.
func (c *Command) SigningBytes() []byte {
	e := encoder{b: make([]byte, 0, len(signingDomain)+64+len(c.Payload))}
	e.raw([]byte(signingDomain))
	c.encodeBody(&e)
	return e.b
}

// Encode returns the canonical encoding: body, then the signatures in order.
func (c *Command) Encode() []byte {
	e := encoder{b: make([]byte, 0, 64+len(c.Payload)+len(c.Signatures)*(32+1+64))}
	c.encodeBody(&e)
	e.uvarint(uint64(len(c.Signatures)))
	for _, s := range c.Signatures {
		e.key(s.Signer)
		e.bytes(s.Sig)
	}
	return e.b
}

// DecodeCommand decodes a command strictly: at most MaxCommandSize bytes, known version and kind,
// at most MaxSignatures signatures of exactly 64 bytes, canonical forms, no trailing bytes. It
// does not decode the payload or check signatures (see Verify).
func DecodeCommand(b []byte) (*Command, error) {
	if len(b) > MaxCommandSize {
		return nil, tooLargef("command: %d bytes, max %d", len(b), MaxCommandSize)
	}
	d := decoder{b: b, ctx: "command"}
	if v := d.u8(); d.err == nil && v != commandVersion {
		return nil, errf(ErrMalformed, "command: unknown version %d", v)
	}
	c := &Command{}
	copy(c.ClusterID[:], d.take(16))
	c.Kind = Kind(d.u8())
	if d.err == nil && !c.Kind.valid() {
		return nil, errf(ErrMalformed, "command: unknown kind %d", c.Kind)
	}
	c.Payload = d.bytes("payload", MaxCommandSize)
	c.IssuedAt = d.time()
	copy(c.Nonce[:], d.take(16))
	if n := d.count("signatures", MaxSignatures); n > 0 {
		c.Signatures = make([]Signature, n)
		for i := range c.Signatures {
			c.Signatures[i].Signer = d.key()
			c.Signatures[i].Sig = d.bytes("signature", ed25519.SignatureSize)
			if d.err == nil && len(c.Signatures[i].Sig) != ed25519.SignatureSize {
				d.malformed("signature: not 64 bytes")
			}
		}
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return c, nil
}

// DecodePayload decodes the payload for c.Kind.
func (c *Command) DecodePayload() (Payload, error) { return DecodePayload(c.Kind, c.Payload) }

// Clone returns a deep copy.
func (c *Command) Clone() *Command {
	out := *c
	out.Payload = bytes.Clone(c.Payload)
	out.Signatures = make([]Signature, len(c.Signatures))
	for i, s := range c.Signatures {
		out.Signatures[i] = Signature{Signer: s.Signer, Sig: bytes.Clone(s.Sig)}
	}
	return &out
}

// VerifiedCommand is a command whose signatures all verified and whose payload decoded. It holds
// its own copy of the command: later changes to the original do not affect it.
type VerifiedCommand struct {
	cmd     *Command
	payload Payload
	signers []ID
	digest  [32]byte // sha256 of cmd.Encode()
}

// Command returns a copy of the verified command.
func (v *VerifiedCommand) Command() *Command { return v.cmd.Clone() }

// Payload returns a freshly decoded copy of the payload: changing it cannot change what Apply
// applies (Apply uses its own copy, decoded from the signed bytes).
func (v *VerifiedCommand) Payload() Payload {
	p, err := v.cmd.DecodePayload()
	if err != nil { // cannot happen: Verify decoded the same bytes
		panic(fmt.Sprintf("identity: verified payload does not decode: %v", err))
	}
	return p
}

// Signers returns the signer IDs in signature order.
func (v *VerifiedCommand) Signers() []ID { return slices.Clone(v.signers) }

// Digest returns sha256 of the command's canonical encoding.
func (v *VerifiedCommand) Digest() [32]byte { return v.digest }

// Verify checks the command independently of any registry state: at least one signature
// (ErrUnsigned), at most MaxSignatures (ErrTooLarge), no signer twice (ErrDuplicateSigner), a
// payload that decodes for its kind (ErrMalformed), and then every signature (ErrBadSignature).
// The cheap structural checks run before the Ed25519 work so junk costs little. Verify is pure
// and safe to call from many goroutines at once.
func (c *Command) Verify() (*VerifiedCommand, error) {
	if len(c.Signatures) == 0 {
		return nil, errf(ErrUnsigned, "command has no signature")
	}
	if len(c.Signatures) > MaxSignatures {
		return nil, tooLargef("command: %d signatures, max %d", len(c.Signatures), MaxSignatures)
	}
	if !c.Kind.valid() {
		return nil, errf(ErrMalformed, "command: unknown kind %d", c.Kind)
	}
	signers := make([]ID, len(c.Signatures))
	for i, s := range c.Signatures {
		if len(s.Sig) != ed25519.SignatureSize {
			return nil, errf(ErrBadSignature, "signature by %s is %d bytes, not %d", s.Signer.ID(), len(s.Sig), ed25519.SignatureSize)
		}
		for _, prev := range signers[:i] {
			if prev.k == s.Signer {
				return nil, errf(ErrDuplicateSigner, "signer %s signed twice", s.Signer.ID())
			}
		}
		signers[i] = s.Signer.ID()
	}
	// Work on the wire form, so what is checked is exactly what was signed and what every other
	// replica decodes from the log. A field that does not survive the encoding (an IssuedAt
	// outside the int64-nanosecond range wraps) is refused rather than silently changed.
	enc := c.Encode()
	cp, err := DecodeCommand(enc)
	if err != nil {
		return nil, err
	}
	if !cp.IssuedAt.Equal(c.IssuedAt) {
		return nil, errf(ErrMalformed, "command: issued_at %s does not survive the encoding", c.IssuedAt)
	}
	p, err := cp.DecodePayload()
	if err != nil {
		return nil, err
	}
	if a, ok := p.(*AutoRevokeAgent); ok { // evidence signatures: pure, so checked here
		for i := range a.Signals {
			if err := a.Signals[i].Verify(); err != nil {
				return nil, fmt.Errorf("identity: signals[%d]: %w", i, err)
			}
		}
	}
	msg := cp.SigningBytes()
	for _, s := range cp.Signatures {
		if !s.Signer.Verify(msg, s.Sig) {
			return nil, errf(ErrBadSignature, "signature by %s does not verify", s.Signer.ID())
		}
	}
	return &VerifiedCommand{cmd: cp, payload: p, signers: signers, digest: sha256.Sum256(enc)}, nil
}
