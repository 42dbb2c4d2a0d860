package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/subtle"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Role of a principal.
type Role uint8

const (
	RoleAgent    Role = 1
	RoleNode     Role = 2
	RoleOperator Role = 3
)

func (r Role) String() string {
	switch r {
	case RoleAgent:
		return "agent"
	case RoleNode:
		return "node"
	case RoleOperator:
		return "operator"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

func (r Role) valid() bool { return r >= RoleAgent && r <= RoleOperator }

// PrivateKey is an Ed25519 private key. The zero value is not a key.
type PrivateKey struct {
	k ed25519.PrivateKey // 64 bytes: seed || public key
}

// GenerateKey draws a new key from rand (crypto/rand.Reader in production).
func GenerateKey(rand io.Reader) (PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("identity: generate key: %w", err)
	}
	return PrivateKey{k: priv}, nil
}

// PrivateKeyFromLibp2p converts a libp2p key; only Ed25519 is accepted.
func PrivateKeyFromLibp2p(k crypto.PrivKey) (PrivateKey, error) {
	if k == nil || k.Type() != crypto.Ed25519 {
		return PrivateKey{}, errf(ErrInvalid, "private key: not an Ed25519 key")
	}
	raw, err := k.Raw()
	if err != nil || len(raw) != ed25519.PrivateKeySize {
		return PrivateKey{}, errf(ErrInvalid, "private key: bad Ed25519 key")
	}
	// Re-derive from the seed so that a stored public half that does not match is refused.
	priv := ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
	if subtle.ConstantTimeCompare(priv, raw) != 1 {
		return PrivateKey{}, errf(ErrInvalid, "private key: public half does not match the seed")
	}
	return PrivateKey{k: priv}, nil
}

// Public returns the public key.
func (k PrivateKey) Public() PublicKey {
	var p PublicKey
	if len(k.k) == ed25519.PrivateKeySize {
		copy(p.b[:], k.k[ed25519.SeedSize:])
	}
	return p
}

// ID returns the peer ID of the public key.
func (k PrivateKey) ID() ID { return k.Public().ID() }

// Sign signs msg. It panics on the zero PrivateKey (a programming error).
func (k PrivateKey) Sign(msg []byte) []byte { return ed25519.Sign(k.k, msg) }

// Libp2p returns the key as a libp2p key (for the libp2p host).
func (k PrivateKey) Libp2p() crypto.PrivKey {
	lk, err := crypto.UnmarshalEd25519PrivateKey(bytes.Clone(k.k))
	if err != nil {
		return nil
	}
	return lk
}

// IsZero reports whether k is the zero value.
func (k PrivateKey) IsZero() bool { return len(k.k) == 0 }

// PublicKey is a raw 32-byte Ed25519 public key. It is comparable; the zero value is "no key".
type PublicKey struct {
	b [ed25519.PublicKeySize]byte
}

// ParsePublicKey accepts exactly 32 bytes, not all zero.
func ParsePublicKey(raw []byte) (PublicKey, error) {
	var p PublicKey
	if len(raw) != ed25519.PublicKeySize {
		return p, errf(ErrMalformed, "public key: want %d bytes, got %d", ed25519.PublicKeySize, len(raw))
	}
	copy(p.b[:], raw)
	if p.IsZero() {
		return PublicKey{}, errf(ErrMalformed, "public key: all zero")
	}
	return p, nil
}

// Bytes returns a copy of the 32 raw bytes.
func (p PublicKey) Bytes() []byte { return bytes.Clone(p.b[:]) }

// ID returns the libp2p peer ID of the key.
func (p PublicKey) ID() ID { return ID{k: p} }

// Verify reports whether sig is a valid signature of msg; false on any bad length or zero key.
func (p PublicKey) Verify(msg, sig []byte) bool {
	if p.IsZero() || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(p.b[:], msg, sig)
}

// Equal compares in constant time.
func (p PublicKey) Equal(o PublicKey) bool { return subtle.ConstantTimeCompare(p.b[:], o.b[:]) == 1 }

// IsZero reports whether p is the zero value.
func (p PublicKey) IsZero() bool { return p.b == [ed25519.PublicKeySize]byte{} }

// Libp2p returns the key as a libp2p public key.
func (p PublicKey) Libp2p() crypto.PubKey {
	k, _ := crypto.UnmarshalEd25519PublicKey(p.Bytes())
	return k
}

// ID is the libp2p peer ID of an Ed25519 public key (identity multihash, "12D3Koo…"). It holds the
// key itself, so it is comparable, 32 bytes, and usable as a map key; the zero value is "no ID".
type ID struct {
	k PublicKey
}

// ParseID parses the text form of an Ed25519 peer ID.
func ParseID(s string) (ID, error) {
	if len(s) > 128 {
		return ID{}, errf(ErrMalformed, "peer id: too long")
	}
	p, err := peer.Decode(s)
	if err != nil {
		return ID{}, errf(ErrMalformed, "peer id %q: %v", s, err)
	}
	return IDFromPeer(p)
}

// IDFromPeer converts a libp2p peer ID; only Ed25519 identity-multihash IDs are accepted.
func IDFromPeer(p peer.ID) (ID, error) {
	pk, err := p.ExtractPublicKey()
	if err != nil {
		return ID{}, errf(ErrMalformed, "peer id: no embedded public key: %v", err)
	}
	if pk.Type() != crypto.Ed25519 {
		return ID{}, errf(ErrMalformed, "peer id: not an Ed25519 key")
	}
	raw, err := pk.Raw()
	if err != nil {
		return ID{}, errf(ErrMalformed, "peer id: %v", err)
	}
	k, err := ParsePublicKey(raw)
	if err != nil {
		return ID{}, err
	}
	id := ID{k: k}
	if id.Peer() != p { // canonical form only
		return ID{}, errf(ErrMalformed, "peer id: not the canonical identity multihash")
	}
	return id, nil
}

// ed25519PeerPrefix is the identity multihash (0x00, length 36) of the protobuf PublicKey
// {Type: Ed25519 (1), Data: 32 bytes}.
var ed25519PeerPrefix = []byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}

// Peer returns the libp2p peer ID ("" for the zero ID).
func (id ID) Peer() peer.ID {
	if id.IsZero() {
		return ""
	}
	b := make([]byte, 0, len(ed25519PeerPrefix)+ed25519.PublicKeySize)
	b = append(append(b, ed25519PeerPrefix...), id.k.b[:]...)
	return peer.ID(b)
}

// String returns the base58 form ("12D3Koo…"), or "" for the zero ID.
func (id ID) String() string {
	if id.IsZero() {
		return ""
	}
	return id.Peer().String()
}

// PublicKey returns the key embedded in the ID.
func (id ID) PublicKey() PublicKey { return id.k }

// IsZero reports whether id is the zero value.
func (id ID) IsZero() bool { return id.k.IsZero() }

// keyPEMType returns the PEM block type for a role: "VIGIL NODE KEY" etc.
func keyPEMType(role Role) string { return "VIGIL " + strings.ToUpper(role.String()) + " KEY" }

const maxKeyFileSize = 4 << 10

// WriteKeyFile writes k as a PEM block "VIGIL <ROLE> KEY" holding the libp2p-marshalled key, with
// mode 0600. It refuses to overwrite an existing file and syncs before returning.
func WriteKeyFile(path string, role Role, k PrivateKey) (err error) {
	if !role.valid() {
		return errf(ErrInvalid, "role: unknown role %d", role)
	}
	if k.IsZero() {
		return errf(ErrInvalid, "key: zero key")
	}
	der, err := crypto.MarshalPrivateKey(k.Libp2p())
	if err != nil {
		return fmt.Errorf("identity: marshal key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: keyPEMType(role), Bytes: der})
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("identity: write key file %s: %w", path, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("identity: write key file %s: %w", path, cerr)
		}
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	if err = f.Chmod(0o600); err != nil { // umask cannot widen, but be exact anyway
		return fmt.Errorf("identity: write key file %s: %w", path, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("identity: write key file %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("identity: write key file %s: %w", path, err)
	}
	return nil
}

// LoadKeyFile reads a key written by WriteKeyFile. It fails with ErrKeyFilePermissions when the
// group or others have any permission on the file, and ErrBadKeyFile when it is not exactly one
// PEM block of the given role holding an Ed25519 key.
func LoadKeyFile(path string, role Role) (PrivateKey, error) {
	if !role.valid() {
		return PrivateKey{}, errf(ErrInvalid, "role: unknown role %d", role)
	}
	f, err := os.Open(path)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("identity: load key file %s: %w: %w", path, err, ErrBadKeyFile)
	}
	defer f.Close()
	st, err := f.Stat() // stat the open file, not the path, so the check and the read see one file
	if err != nil {
		return PrivateKey{}, fmt.Errorf("identity: load key file %s: %w: %w", path, err, ErrBadKeyFile)
	}
	if !st.Mode().IsRegular() {
		return PrivateKey{}, errf(ErrBadKeyFile, "key file %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return PrivateKey{}, errf(ErrKeyFilePermissions,
			"key file %s has mode %04o and is accessible by group or others; run `chmod 600 %s`",
			path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return PrivateKey{}, fmt.Errorf("identity: load key file %s: %w: %w", path, err, ErrBadKeyFile)
	}
	if len(data) > maxKeyFileSize {
		return PrivateKey{}, errf(ErrBadKeyFile, "key file %s: larger than %d bytes", path, maxKeyFileSize)
	}
	k, err := ParseKeyPEM(data, role)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("identity: key file %s: %w", path, err)
	}
	return k, nil
}

// ParseKeyPEM parses the contents of a key file for role (see LoadKeyFile; no permission check).
func ParseKeyPEM(data []byte, role Role) (PrivateKey, error) {
	if len(data) > maxKeyFileSize {
		return PrivateKey{}, errf(ErrBadKeyFile, "larger than %d bytes", maxKeyFileSize)
	}
	blk, rest := pem.Decode(data)
	if blk == nil {
		return PrivateKey{}, errf(ErrBadKeyFile, "no PEM block")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return PrivateKey{}, errf(ErrBadKeyFile, "trailing data after the PEM block")
	}
	if len(blk.Headers) != 0 {
		return PrivateKey{}, errf(ErrBadKeyFile, "unexpected PEM headers")
	}
	if want := keyPEMType(role); blk.Type != want {
		return PrivateKey{}, errf(ErrBadKeyFile, "holds %q, want %q", blk.Type, want)
	}
	lk, err := crypto.UnmarshalPrivateKey(blk.Bytes)
	if err != nil {
		return PrivateKey{}, errf(ErrBadKeyFile, "corrupt key: %v", err)
	}
	k, err := PrivateKeyFromLibp2p(lk)
	if err != nil {
		return PrivateKey{}, errf(ErrBadKeyFile, "%v", err)
	}
	return k, nil
}
