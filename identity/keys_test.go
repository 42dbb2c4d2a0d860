package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func TestKeysSignVerify(t *testing.T) {
	rnd := seeded(1)
	k := mustKey(t, rnd)
	msg := []byte("hello")
	sig := k.Sign(msg)
	if !k.Public().Verify(msg, sig) {
		t.Fatal("valid signature refused")
	}
	if k.Public().Verify([]byte("other"), sig) {
		t.Fatal("signature over other message accepted")
	}
	for _, bad := range [][]byte{nil, sig[:63], append(bytes.Clone(sig), 0)} {
		if k.Public().Verify(msg, bad) {
			t.Fatalf("signature of %d bytes accepted", len(bad))
		}
	}
	if (PublicKey{}).Verify(msg, sig) {
		t.Fatal("zero key verified")
	}
	k2 := mustKey(t, rnd)
	if k.Public().Equal(k2.Public()) || !k.Public().Equal(k.Public()) {
		t.Fatal("Equal wrong")
	}
	// libp2p round trip and peer IDs agree with libp2p's own derivation.
	lk := k.Libp2p()
	back, err := PrivateKeyFromLibp2p(lk)
	if err != nil || !back.Public().Equal(k.Public()) {
		t.Fatalf("libp2p round trip: %v", err)
	}
	want, err := peer.IDFromPublicKey(lk.GetPublic())
	if err != nil {
		t.Fatal(err)
	}
	if k.ID().Peer() != want || k.ID().String() != want.String() {
		t.Fatalf("peer id %s, libp2p says %s", k.ID(), want)
	}
	if !strings.HasPrefix(k.ID().String(), "12D3Koo") {
		t.Fatalf("unexpected id form %s", k.ID())
	}
	sig2, _ := lk.Sign(msg)
	if !k.Public().Verify(msg, sig2) {
		t.Fatal("libp2p signature refused")
	}
}

func TestPrivateKeyFromLibp2pRejectsOtherTypes(t *testing.T) {
	sk, _, err := crypto.GenerateSecp256k1Key(seeded(2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PrivateKeyFromLibp2p(sk); err == nil {
		t.Fatal("secp256k1 key accepted")
	}
}

func TestParsePublicKey(t *testing.T) {
	k := mustKey(t, seeded(3)).Public()
	cases := []struct {
		name string
		raw  []byte
		ok   bool
	}{
		{"valid", k.Bytes(), true},
		{"short", k.Bytes()[:31], false},
		{"long", append(k.Bytes(), 1), false},
		{"empty", nil, false},
		{"zero", make([]byte, 32), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := ParsePublicKey(c.raw)
			if c.ok != (err == nil) {
				t.Fatalf("err = %v", err)
			}
			if c.ok && !p.Equal(k) {
				t.Fatal("different key")
			}
			if !c.ok {
				wantErr(t, err, ErrMalformed)
			}
		})
	}
}

func TestParseID(t *testing.T) {
	k := mustKey(t, seeded(4))
	_, secpPub, _ := crypto.GenerateSecp256k1Key(seeded(5))
	secpID, _ := peer.IDFromPublicKey(secpPub)
	cases := []struct {
		name string
		in   string
		ok   bool
	}{
		{"valid", k.ID().String(), true},
		{"empty", "", false},
		{"garbage", "not-a-peer-id", false},
		{"secp256k1", secpID.String(), false},
		{"sha256 multihash", "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", false},
		{"truncated", k.ID().String()[:20], false},
		{"too long", strings.Repeat("1", 200), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, err := ParseID(c.in)
			if c.ok != (err == nil) {
				t.Fatalf("ParseID(%q) err = %v", c.in, err)
			}
			if c.ok {
				if id != k.ID() || id.String() != c.in || !id.PublicKey().Equal(k.Public()) {
					t.Fatal("round trip mismatch")
				}
				p, err := IDFromPeer(id.Peer())
				if err != nil || p != id {
					t.Fatalf("IDFromPeer: %v", err)
				}
			} else {
				wantErr(t, err, ErrMalformed)
			}
		})
	}
	if !(ID{}).IsZero() || (ID{}).String() != "" || k.ID().IsZero() {
		t.Fatal("zero ID handling")
	}
	m := map[ID]int{k.ID(): 1}
	id2, _ := ParseID(k.ID().String())
	if m[id2] != 1 {
		t.Fatal("ID not usable as a map key")
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	k := mustKey(t, seeded(6))
	path := filepath.Join(dir, "node.key")
	if err := WriteKeyFile(path, RoleNode, k); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %o, want 600", st.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if blk, _ := pem.Decode(data); blk == nil || blk.Type != "VIGIL NODE KEY" {
		t.Fatalf("PEM type wrong: %q", data)
	}
	got, err := LoadKeyFile(path, RoleNode)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Public().Equal(k.Public()) || !bytes.Equal(got.Sign([]byte("x")), k.Sign([]byte("x"))) {
		t.Fatal("loaded a different key")
	}
	if err := WriteKeyFile(path, RoleNode, k); err == nil {
		t.Fatal("overwrote an existing key file")
	}

	t.Run("wrong role", func(t *testing.T) {
		_, err := LoadKeyFile(path, RoleAgent)
		wantErr(t, err, ErrBadKeyFile)
	})
	t.Run("group readable", func(t *testing.T) {
		p := filepath.Join(dir, "loose.key")
		if err := WriteKeyFile(p, RoleOperator, k); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o640); err != nil {
			t.Fatal(err)
		}
		_, err := LoadKeyFile(p, RoleOperator)
		wantErr(t, err, ErrKeyFilePermissions)
		for _, want := range []string{p, "0640", "chmod 600 " + p} {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not mention %q", err, want)
			}
		}
	})
	t.Run("world readable", func(t *testing.T) {
		p := filepath.Join(dir, "world.key")
		if err := WriteKeyFile(p, RoleAgent, k); err != nil {
			t.Fatal(err)
		}
		_ = os.Chmod(p, 0o604)
		_, err := LoadKeyFile(p, RoleAgent)
		wantErr(t, err, ErrKeyFilePermissions)
	})
	corrupt := []struct {
		name string
		data []byte
	}{
		{"not pem", []byte("hello")},
		{"bad body", pem.EncodeToMemory(&pem.Block{Type: "VIGIL NODE KEY", Bytes: []byte{1, 2, 3}})},
		{"trailing", append(bytes.Clone(data), []byte("junk")...)},
		{"two blocks", append(bytes.Clone(data), data...)},
		{"empty", nil},
		{"huge", bytes.Repeat([]byte("A"), 5000)},
	}
	for _, c := range corrupt {
		t.Run("corrupt "+c.name, func(t *testing.T) {
			p := filepath.Join(dir, "c-"+strings.ReplaceAll(c.name, " ", "-"))
			if err := os.WriteFile(p, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadKeyFile(p, RoleNode)
			wantErr(t, err, ErrBadKeyFile)
		})
	}
	t.Run("missing", func(t *testing.T) {
		_, err := LoadKeyFile(filepath.Join(dir, "nope"), RoleNode)
		wantErr(t, err, ErrBadKeyFile)
	})
	t.Run("mismatched public half", func(t *testing.T) {
		raw := bytes.Clone(k.k)
		raw[40] ^= 1 // corrupt the stored public key, keep the seed
		lk, err := crypto.UnmarshalEd25519PrivateKey(raw)
		if err != nil {
			t.Fatal(err)
		}
		der, _ := crypto.MarshalPrivateKey(lk)
		_, err = ParseKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "VIGIL NODE KEY", Bytes: der}), RoleNode)
		wantErr(t, err, ErrBadKeyFile)
	})
}

func FuzzParseKeyPEM(f *testing.F) {
	k := mustKey(f, seeded(7))
	der, _ := crypto.MarshalPrivateKey(k.Libp2p())
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "VIGIL NODE KEY", Bytes: der}))
	f.Add([]byte("-----BEGIN VIGIL NODE KEY-----\n-----END VIGIL NODE KEY-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKeyPEM(data, RoleNode)
		if err != nil {
			wantErr(t, err, ErrBadKeyFile)
			return
		}
		if len(k.k) != ed25519.PrivateKeySize {
			t.Fatal("accepted a key of the wrong size")
		}
		if !k.Public().Verify([]byte("m"), k.Sign([]byte("m"))) {
			t.Fatal("accepted key cannot sign")
		}
	})
}
