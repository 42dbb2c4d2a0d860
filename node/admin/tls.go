package admin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"net"
	"net/http"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"

	"github.com/vigil-mesh/vigil/identity"
)

// TLSConfig returns a mutual-TLS configuration whose certificate is derived from key by
// go-libp2p's TLS identity (a self-signed certificate carrying a signature by the libp2p key),
// so the peer is authenticated by the same key that signs commands. Each side requires a
// certificate from the other (no certificate → the handshake fails) and checks it with
// PubKeyFromCertChain. When remote is not empty the peer must be exactly that peer ID (the
// client pins the server's node ID); the server passes "" and authorises per request.
// NextProtos are h2 and http/1.1 (the libp2p ALPN is not used on the admin API).
func TLSConfig(key identity.PrivateKey, remote peer.ID) (*tls.Config, error) {
	if key.IsZero() {
		return nil, errf(ErrInvalidConfig, "key: required")
	}
	ident, err := libp2ptls.NewIdentity(key.Libp2p())
	if err != nil {
		return nil, fmt.Errorf("admin: tls identity: %w", err)
	}
	// ConfigForPeer's callback sends the key on a single-use channel; we keep its settings
	// (certificate, TLS 1.3, RequireAnyClientCert) and replace the callback with a reusable one.
	conf, _ := ident.ConfigForPeer(remote)
	conf.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		id, err := peerFromRaw(raw)
		if err != nil {
			return err
		}
		if remote != "" && id.Peer() != remote {
			return fmt.Errorf("admin: peer is %s, want %s", id, remote)
		}
		return nil
	}
	conf.NextProtos = []string{"h2", "http/1.1"}
	return conf, nil
}

// maxCertBytes caps one raw certificate before it is parsed (libp2p's are well under 1 KiB).
const maxCertBytes = 16 << 10

func peerFromRaw(raw [][]byte) (identity.ID, error) {
	if len(raw) != 1 {
		return identity.ID{}, fmt.Errorf("admin: want one certificate, got %d", len(raw))
	}
	if len(raw[0]) > maxCertBytes {
		return identity.ID{}, fmt.Errorf("admin: certificate of %d bytes, max %d", len(raw[0]), maxCertBytes)
	}
	cert, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return identity.ID{}, fmt.Errorf("admin: certificate: %w", err)
	}
	return peerFromChain([]*x509.Certificate{cert})
}

// peerFromChain recovers the libp2p key of a certificate chain and returns its identity
// (Ed25519 keys only: every Vigil principal is one).
func peerFromChain(chain []*x509.Certificate) (identity.ID, error) {
	pub, err := libp2ptls.PubKeyFromCertChain(chain)
	if err != nil {
		return identity.ID{}, fmt.Errorf("admin: certificate: %w", err)
	}
	p, err := peer.IDFromPublicKey(pub)
	if err != nil {
		return identity.ID{}, fmt.Errorf("admin: certificate key: %w", err)
	}
	id, err := identity.IDFromPeer(p)
	if err != nil {
		return identity.ID{}, fmt.Errorf("admin: certificate key: %w", err)
	}
	return id, nil
}

// connPeer caches the peer of one TLS connection: the certificate is checked once per
// connection, not once per request.
type connPeer struct {
	once sync.Once
	id   identity.ID
	err  error
}

type connPeerKey struct{}

// connContext is the http.Server ConnContext hook of the TLS listener.
func connContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connPeerKey{}, &connPeer{})
}

// tlsCaller returns the caller proved by the request's client certificate. The connection has
// already passed VerifyPeerCertificate; this recovers the ID again, cached per connection.
func tlsCaller(r *http.Request) (Caller, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return Caller{}, fmt.Errorf("admin: no client certificate")
	}
	get := func() (identity.ID, error) { return peerFromChain(clone(r.TLS.PeerCertificates)) }
	if cp, ok := r.Context().Value(connPeerKey{}).(*connPeer); ok {
		cp.once.Do(func() { cp.id, cp.err = get() })
		return Caller{ID: cp.id}, cp.err
	}
	id, err := get()
	return Caller{ID: id}, err
}

// clone copies the certificates: PubKeyFromCertChain edits UnhandledCriticalExtensions, and the
// connection state is shared by concurrent HTTP/2 streams.
func clone(chain []*x509.Certificate) []*x509.Certificate {
	out := make([]*x509.Certificate, len(chain))
	for i, c := range chain {
		cc := *c
		cc.UnhandledCriticalExtensions = append([]asn1.ObjectIdentifier(nil), c.UnhandledCriticalExtensions...)
		out[i] = &cc
	}
	return out
}
