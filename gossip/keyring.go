package gossip

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Keyring files: one base64 AES key (16, 24 or 32 bytes) per line, the first one primary;
// blank lines and lines starting with # are ignored. Every node of a mesh holds the same file.
// Rotation (docs/gossip.md): Mesh.InstallKey the new key on every node, then UseKey it, then
// RemoveKey the old one; each rewrites the file (WriteKeyring, atomically). The node package runs
// each step on every admitted node (vigil gossip keys).
const (
	maxKeyringFile = 16 << 10
	maxKeyringKeys = 16
)

// GenerateKeyringKey draws a 32-byte AES-256 key.
func GenerateKeyringKey(rand io.Reader) ([]byte, error) {
	k := make([]byte, 32)
	if _, err := io.ReadFull(rand, k); err != nil {
		return nil, fmt.Errorf("gossip: keyring key: %w", err)
	}
	return k, nil
}

// WriteKeyring writes keys (primary first) to path with mode 0600, creating its folder.
func WriteKeyring(path string, keys [][]byte) error {
	if len(keys) == 0 || len(keys) > maxKeyringKeys {
		return configErr("keyring", "%d keys, want 1..%d", len(keys), maxKeyringKeys)
	}
	var b bytes.Buffer
	b.WriteString("# Vigil gossip keyring: AES keys, base64, the first one primary. Same file on every node.\n")
	for i, k := range keys {
		if l := len(k); l != 16 && l != 24 && l != 32 {
			return configErr("keyring", "key %d is %d bytes, want 16, 24 or 32", i, l)
		}
		b.WriteString(base64.StdEncoding.EncodeToString(k))
		b.WriteByte('\n')
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("gossip: keyring %s: %w", path, err)
	}
	if err := writeAtomic(path, b.Bytes()); err != nil {
		return fmt.Errorf("gossip: keyring %s: %w", path, err)
	}
	return nil
}

// writeAtomic replaces path with data: a temporary file in the same folder, fsynced, renamed
// over path, then the folder fsynced, so a crash leaves the old file or the new one.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing left to remove
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// KeyFingerprint names a keyring key without revealing it: the first 8 bytes of its SHA-256,
// hex (16 characters).
func KeyFingerprint(key []byte) string {
	h := sha256.Sum256(key)
	return hex.EncodeToString(h[:8])
}

// ValidKeyLen reports whether n is an AES key length (16, 24 or 32 bytes).
func ValidKeyLen(n int) bool { return n == 16 || n == 24 || n == 32 }

// LoadKeyring reads a keyring file. Errors name the file and line.
func LoadKeyring(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gossip: keyring: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyringFile+1))
	if err != nil {
		return nil, fmt.Errorf("gossip: keyring %s: %w", path, err)
	}
	if len(data) > maxKeyringFile {
		return nil, configErr("keyring", "%s is larger than %d bytes", path, maxKeyringFile)
	}
	return ParseKeyring(path, data)
}

// ParseKeyring parses keyring file contents; name is used in errors.
func ParseKeyring(name string, data []byte) ([][]byte, error) {
	var keys [][]byte
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(keys) == maxKeyringKeys {
			return nil, configErr("keyring", "%s:%d: more than %d keys", name, i+1, maxKeyringKeys)
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, configErr("keyring", "%s:%d: not base64", name, i+1)
		}
		if l := len(k); l != 16 && l != 24 && l != 32 {
			return nil, configErr("keyring", "%s:%d: key of %d bytes, want 16, 24 or 32", name, i+1, l)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, configErr("keyring", "%s holds no key", name)
	}
	return keys, nil
}
