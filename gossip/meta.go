package gossip

import (
	"crypto/ed25519"
	"encoding/binary"
	"unicode/utf8"

	"github.com/vigil-mesh/vigil/identity"
)

const (
	metaVersion = 1
	metaDomain  = "vigil/gossip-meta/v1\x00"
	// MaxMetaSize is memberlist's limit on node metadata (memberlist.MetaMaxSize).
	MaxMetaSize = 512
	maxRoleLen  = 16
)

// Meta is a node's memberlist metadata: who it is and where its libp2p host listens, signed by
// the node key so that no holder of the gossip key can advertise someone else's addresses.
type Meta struct {
	Key   identity.PublicKey // the node key; memberlist's node name is its peer ID
	Site  string             // at most identity.MaxSiteLen bytes
	Role  string             // "voter" or "nonvoter"; at most 16 bytes
	Addrs []string           // libp2p multiaddrs without /p2p; as many as fit in MaxMetaSize
	Sig   []byte
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func (m *Meta) appendBody(b []byte) []byte {
	b = append(b, metaVersion)
	b = append(b, m.Key.Bytes()...)
	b = appendStr(b, m.Site)
	b = appendStr(b, m.Role)
	b = append(b, byte(len(m.Addrs)))
	for _, a := range m.Addrs {
		b = appendStr(b, a)
	}
	return b
}

func (m *Meta) signingBytes(cluster identity.ClusterID) []byte {
	b := append([]byte(metaDomain), cluster[:]...)
	return m.appendBody(b)
}

// Encode returns the wire form.
func (m *Meta) Encode() []byte {
	b := m.appendBody(nil)
	var sig [ed25519.SignatureSize]byte
	copy(sig[:], m.Sig)
	return append(b, sig[:]...)
}

// signMeta builds the signed metadata, dropping trailing addresses until it fits MaxMetaSize.
func signMeta(cluster identity.ClusterID, k identity.PrivateKey, site, role string, addrs []string) (*Meta, error) {
	if len(site) > identity.MaxSiteLen {
		return nil, configErr("site", "%d bytes, max %d", len(site), identity.MaxSiteLen)
	}
	if len(role) > maxRoleLen {
		return nil, configErr("role", "%d bytes, max %d", len(role), maxRoleLen)
	}
	m := &Meta{Key: k.Public(), Site: site, Role: role}
	for _, a := range addrs {
		if len(a) > identity.MaxAddrLen || len(m.Addrs) == identity.MaxAddrs {
			continue
		}
		m.Addrs = append(m.Addrs, a)
		if len(m.Encode()) > MaxMetaSize {
			m.Addrs = m.Addrs[:len(m.Addrs)-1]
			break
		}
	}
	m.Sig = k.Sign(m.signingBytes(cluster))
	return m, nil
}

// DecodeMeta decodes strictly (length capped first, every string capped, no trailing bytes).
func DecodeMeta(b []byte) (*Meta, error) {
	if len(b) > MaxMetaSize {
		return nil, errf(ErrTooLarge, "meta: %d bytes, max %d", len(b), MaxMetaSize)
	}
	d := metaDecoder{b: b}
	if d.u8() != metaVersion && d.err == nil {
		return nil, errf(ErrMalformed, "meta: unknown version")
	}
	m := &Meta{}
	if kb := d.take(32); kb != nil {
		k, err := identity.ParsePublicKey(kb)
		if err != nil {
			return nil, errf(ErrMalformed, "meta: key: %v", err)
		}
		m.Key = k
	}
	m.Site = d.str(identity.MaxSiteLen)
	m.Role = d.str(maxRoleLen)
	n := int(d.u8())
	if n > identity.MaxAddrs {
		return nil, errf(ErrTooLarge, "meta: %d addresses, max %d", n, identity.MaxAddrs)
	}
	for i := 0; i < n && d.err == nil; i++ {
		m.Addrs = append(m.Addrs, d.str(identity.MaxAddrLen))
	}
	m.Sig = append([]byte(nil), d.take(ed25519.SignatureSize)...)
	if d.err == nil && len(d.b) != 0 {
		d.err = errf(ErrMalformed, "meta: trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	return m, nil
}

type metaDecoder struct {
	b   []byte
	err error
}

func (d *metaDecoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.err = errf(ErrMalformed, "meta: truncated")
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *metaDecoder) u8() uint8 {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *metaDecoder) str(max int) string {
	if d.err != nil {
		return ""
	}
	n, w := binary.Uvarint(d.b)
	if w <= 0 || (w > 1 && d.b[w-1] == 0) {
		d.err = errf(ErrMalformed, "meta: bad length")
		return ""
	}
	if n > uint64(max) {
		d.err = errf(ErrTooLarge, "meta: string of %d bytes, max %d", n, max)
		return ""
	}
	d.b = d.b[w:]
	p := d.take(int(n))
	if d.err == nil && !utf8.Valid(p) {
		d.err = errf(ErrMalformed, "meta: invalid UTF-8")
	}
	return string(p)
}

// verifyMeta checks that raw is metadata signed by the key behind name (memberlist's node name,
// the node's peer ID) for this cluster.
func verifyMeta(cluster identity.ClusterID, id identity.ID, raw []byte) (*Meta, error) {
	m, err := DecodeMeta(raw)
	if err != nil {
		return nil, err
	}
	if m.Key != id.PublicKey() {
		return nil, errf(ErrMismatch, "meta of %s carries the key of %s", id, m.Key.ID())
	}
	if !m.Key.Verify(m.signingBytes(cluster), m.Sig) {
		return nil, errf(ErrBadSignature, "meta of %s", id)
	}
	return m, nil
}
