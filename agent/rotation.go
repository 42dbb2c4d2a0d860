package agent

import (
	"bytes"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"time"

	"github.com/vigil-mesh/vigil/identity"
)

// Key rotation request: the agent asks its operators to move its registration to a new key.
//
// The request is a PEM block "VIGIL KEY ROTATION REQUEST" whose bytes are the canonical encoding
//
//	u8 version (1) | u16 len | name | 32-byte old public key | 32-byte new public key |
//	i64 issued-at (Unix ns, big-endian) | 64-byte signature by the old key | 64-byte signature by the new key
//
// and both signatures are over RotationDomain || everything before the signatures. The old
// key's signature proves the registered agent asks for it; the new key's proves the agent holds
// the new key (no one can rotate an agent onto a key they do not own). The operator checks it
// (ParseRotationRequest, Verify, and that OldKey is the registered key) and signs the registry
// command RotateAgentKey{Name, NewKey} (`vigil agent rotate-key NAME --request FILE`).
const (
	RotationPEMType = "VIGIL KEY ROTATION REQUEST"
	RotationDomain  = "vigil/key-rotation-request/v1\x00"
	rotationVersion = 1
	maxRotationPEM  = 4 << 10
)

// RotationRequest is a parsed key rotation request.
type RotationRequest struct {
	Name           string
	OldKey, NewKey identity.PublicKey
	IssuedAt       time.Time
	OldSig, NewSig []byte
}

// NewRotationRequest builds and signs a request to move agent name from old to new.
func NewRotationRequest(name string, old, new identity.PrivateKey, now time.Time) (RotationRequest, error) {
	if err := identity.ValidateName(name); err != nil {
		return RotationRequest{}, fmt.Errorf("agent: rotation: %v: %w", err, ErrInvalidArgument)
	}
	if old.IsZero() || new.IsZero() {
		return RotationRequest{}, fmt.Errorf("agent: rotation: old and new keys must be set: %w", ErrInvalidArgument)
	}
	if old.Public().Equal(new.Public()) {
		return RotationRequest{}, fmt.Errorf("agent: rotation: the new key is the old key: %w", ErrInvalidArgument)
	}
	r := RotationRequest{Name: name, OldKey: old.Public(), NewKey: new.Public(), IssuedAt: time.Unix(0, now.UnixNano()).UTC()}
	msg := r.signedBytes()
	r.OldSig, r.NewSig = old.Sign(msg), new.Sign(msg)
	return r, nil
}

// RequestRotation returns a rotation request (PEM) moving this agent's registration to newKey,
// signed by the current key and by newKey. Give it to an operator; once the operator's
// RotateAgentKey commits, the current key is refused and the agent must connect with newKey.
func (c *Client) RequestRotation(newKey identity.PrivateKey) ([]byte, error) {
	name := c.Registration().Name
	if name == "" {
		return nil, fmt.Errorf("agent: rotation: the registration is not known yet (never attached): %w", ErrInvalidArgument)
	}
	r, err := NewRotationRequest(name, c.cfg.Key, newKey, time.Now())
	if err != nil {
		return nil, err
	}
	return r.Encode(), nil
}

func (r RotationRequest) signedBytes() []byte {
	b := make([]byte, 0, len(RotationDomain)+1+2+len(r.Name)+64+8)
	b = append(b, RotationDomain...)
	b = append(b, rotationVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Name)))
	b = append(b, r.Name...)
	b = append(b, r.OldKey.Bytes()...)
	b = append(b, r.NewKey.Bytes()...)
	return binary.BigEndian.AppendUint64(b, uint64(r.IssuedAt.UnixNano()))
}

// Encode returns the request as a PEM block.
func (r RotationRequest) Encode() []byte {
	body := r.signedBytes()[len(RotationDomain):]
	body = append(body, r.OldSig...)
	body = append(body, r.NewSig...)
	return pem.EncodeToMemory(&pem.Block{Type: RotationPEMType, Bytes: body})
}

// ParseRotationRequest parses a PEM rotation request strictly (one block of the right type, the
// exact length, a valid name and keys, nothing after it). It does not check the signatures: call
// Verify.
func ParseRotationRequest(data []byte) (RotationRequest, error) {
	bad := func(format string, args ...any) (RotationRequest, error) {
		return RotationRequest{}, fmt.Errorf("agent: rotation request: "+format+": %w", append(args, ErrBadRotationRequest)...)
	}
	if len(data) > maxRotationPEM {
		return bad("%d bytes, at most %d", len(data), maxRotationPEM)
	}
	blk, rest := pem.Decode(data)
	if blk == nil {
		return bad("no PEM block")
	}
	if blk.Type != RotationPEMType {
		return bad("PEM block %q, want %q", blk.Type, RotationPEMType)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return bad("trailing data after the PEM block")
	}
	b := blk.Bytes
	if len(b) < 3 {
		return bad("truncated")
	}
	if b[0] != rotationVersion {
		return bad("version %d", b[0])
	}
	n := int(binary.BigEndian.Uint16(b[1:3]))
	if n > identity.MaxNameLen {
		return bad("name of %d bytes, at most %d", n, identity.MaxNameLen)
	}
	if want := 3 + n + 32 + 32 + 8 + 64 + 64; len(b) != want {
		return bad("%d bytes, want %d", len(b), want)
	}
	r := RotationRequest{Name: string(b[3 : 3+n])}
	if err := identity.ValidateName(r.Name); err != nil {
		return bad("name: %v", err)
	}
	off := 3 + n
	var err error
	if r.OldKey, err = identity.ParsePublicKey(b[off : off+32]); err != nil {
		return bad("old key: %v", err)
	}
	if r.NewKey, err = identity.ParsePublicKey(b[off+32 : off+64]); err != nil {
		return bad("new key: %v", err)
	}
	r.IssuedAt = time.Unix(0, int64(binary.BigEndian.Uint64(b[off+64:off+72]))).UTC()
	r.OldSig = bytes.Clone(b[off+72 : off+136])
	r.NewSig = bytes.Clone(b[off+136 : off+200])
	return r, nil
}

// Verify checks both signatures over the canonical encoding and that the keys differ.
func (r RotationRequest) Verify() error {
	if r.OldKey.Equal(r.NewKey) {
		return fmt.Errorf("agent: rotation request: the new key is the old key: %w", ErrBadRotationRequest)
	}
	msg := r.signedBytes()
	if len(r.OldSig) != 64 || !r.OldKey.Verify(msg, r.OldSig) {
		return fmt.Errorf("agent: rotation request: the old key's signature does not verify: %w", ErrBadRotationRequest)
	}
	if len(r.NewSig) != 64 || !r.NewKey.Verify(msg, r.NewSig) {
		return fmt.Errorf("agent: rotation request: the new key's signature does not verify: %w", ErrBadRotationRequest)
	}
	return nil
}

// Command returns the registry payload an operator signs to complete the rotation.
func (r RotationRequest) Command() *identity.RotateAgentKey {
	return &identity.RotateAgentKey{Name: r.Name, NewKey: r.NewKey}
}
