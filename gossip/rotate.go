package gossip

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/hashicorp/memberlist"
)

// ErrNoKeyring: the mesh runs in plaintext (no keyring), so there is nothing to rotate.
var ErrNoKeyring = errors.New("gossip: this node runs without a keyring (gossip.keyring is empty); restart it with one to encrypt and rotate")

// ErrKeyringRefused: a keyring change that does not apply to the current keyring (bad key,
// unknown fingerprint, the primary key, a full keyring). Nothing was changed.
var ErrKeyringRefused = errors.New("keyring change refused")

func refuse(field, format string, args ...any) error {
	return fmt.Errorf("gossip: %s: %s: %w", field, fmt.Sprintf(format, args...), ErrKeyringRefused)
}

// KeyFingerprints returns the fingerprints (KeyFingerprint) of the keyring's keys, the primary
// first; nil in plaintext.
func (m *Mesh) KeyFingerprints() []string {
	if m.keyring == nil {
		return nil
	}
	var out []string
	for _, k := range m.keyring.GetKeys() {
		out = append(out, KeyFingerprint(k))
	}
	return out
}

// InstallKey adds key to the keyring (not as primary) and writes the keyring to path
// (WriteKeyring: atomic) so a restart keeps it. Installing a key already held changes nothing.
func (m *Mesh) InstallKey(key []byte, path string) error {
	if !ValidKeyLen(len(key)) {
		return refuse("key", "%d bytes, want 16, 24 or 32", len(key))
	}
	return m.changeKeyring(path, func(kr *memberlist.Keyring, keys [][]byte) ([][]byte, func() error, error) {
		for _, k := range keys {
			if bytes.Equal(k, key) {
				return keys, nil, nil
			}
		}
		if len(keys) >= maxKeyringKeys {
			return nil, nil, refuse("key", "the keyring holds %d keys already (max %d): remove one first", len(keys), maxKeyringKeys)
		}
		return append(keys, key), func() error { return kr.AddKey(key) }, nil
	})
}

// UseKey makes the installed key with fingerprint fp the primary (encrypting) key, and
// persists the keyring to path.
func (m *Mesh) UseKey(fp, path string) error {
	return m.changeKeyring(path, func(kr *memberlist.Keyring, keys [][]byte) ([][]byte, func() error, error) {
		i := indexOfFingerprint(keys, fp)
		if i < 0 {
			return nil, nil, refuse("fingerprint", "no installed key has fingerprint %s (install it first)", fp)
		}
		if i == 0 {
			return keys, nil, nil
		}
		key := keys[i]
		out := append([][]byte{key}, append(append([][]byte{}, keys[:i]...), keys[i+1:]...)...)
		return out, func() error { return kr.UseKey(key) }, nil
	})
}

// RemoveKey removes the installed key with fingerprint fp, and persists the keyring to path.
// The primary key cannot be removed: use another key first.
func (m *Mesh) RemoveKey(fp, path string) error {
	return m.changeKeyring(path, func(kr *memberlist.Keyring, keys [][]byte) ([][]byte, func() error, error) {
		i := indexOfFingerprint(keys, fp)
		switch {
		case i < 0:
			return nil, nil, refuse("fingerprint", "no installed key has fingerprint %s", fp)
		case i == 0:
			return nil, nil, refuse("fingerprint", "%s is the primary key: make another key primary (use) before removing it", fp)
		}
		key := keys[i]
		out := append(append([][]byte{}, keys[:i]...), keys[i+1:]...)
		return out, func() error { return kr.RemoveKey(key) }, nil
	})
}

// changeKeyring computes the new key list from the current one, writes it to path, then applies
// it to memberlist's keyring: a refused operation or a failed write changes nothing.
func (m *Mesh) changeKeyring(path string, plan func(*memberlist.Keyring, [][]byte) ([][]byte, func() error, error)) error {
	if m.keyring == nil {
		return ErrNoKeyring
	}
	m.rotateMu.Lock()
	defer m.rotateMu.Unlock()
	keys := m.keyring.GetKeys()
	next, apply, err := plan(m.keyring, keys)
	if err != nil || apply == nil {
		return err
	}
	if path != "" {
		if err := WriteKeyring(path, next); err != nil {
			return err
		}
	}
	if err := apply(); err != nil {
		if path != "" {
			_ = WriteKeyring(path, keys) // put the file back as memberlist still has it
		}
		return fmt.Errorf("gossip: keyring: %w", err)
	}
	return nil
}

func indexOfFingerprint(keys [][]byte, fp string) int {
	for i, k := range keys {
		if KeyFingerprint(k) == fp {
			return i
		}
	}
	return -1
}
