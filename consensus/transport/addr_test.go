package transport

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

func testPeer(t testing.TB) peer.ID {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestServerAddressRoundTrip(t *testing.T) {
	id, other := testPeer(t), testPeer(t)
	tcp := multiaddr.StringCast("/ip4/127.0.0.1/tcp/7400")
	quic := multiaddr.StringCast("/ip4/10.0.0.1/udp/7400/quic-v1")
	withOther := multiaddr.StringCast("/ip4/127.0.0.1/tcp/7400/p2p/" + other.String())
	tests := []struct {
		name      string
		addrs     []multiaddr.Multiaddr
		want      string
		wantAddrs int
	}{
		{"no addrs gives bare id", nil, id.String(), 0},
		{"first addr wins", []multiaddr.Multiaddr{tcp, quic}, "/ip4/127.0.0.1/tcp/7400/p2p/" + id.String(), 1},
		{"quic", []multiaddr.Multiaddr{quic}, "/ip4/10.0.0.1/udp/7400/quic-v1/p2p/" + id.String(), 1},
		{"existing p2p suffix replaced", []multiaddr.Multiaddr{withOther}, "/ip4/127.0.0.1/tcp/7400/p2p/" + id.String(), 1},
		{"empty addr skipped", []multiaddr.Multiaddr{nil, tcp}, "/ip4/127.0.0.1/tcp/7400/p2p/" + id.String(), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ServerAddress(id, tc.addrs)
			if string(got) != tc.want {
				t.Fatalf("ServerAddress = %q, want %q", got, tc.want)
			}
			info, err := ParseServerAddress(got)
			if err != nil {
				t.Fatalf("ParseServerAddress(%q): %v", got, err)
			}
			if info.ID != id || len(info.Addrs) != tc.wantAddrs {
				t.Fatalf("parsed %v, want id %s with %d addrs", info, id, tc.wantAddrs)
			}
		})
	}
}

func TestParseServerAddressRejects(t *testing.T) {
	id := testPeer(t)
	tests := []struct {
		name string
		addr string
	}{
		{"empty", ""},
		{"host:port", "127.0.0.1:7400"},
		{"garbage id", "12D3KooWnotapeerid"},
		{"multiaddr without p2p", "/ip4/127.0.0.1/tcp/7400"},
		{"bad multiaddr", "/ip4/999.0.0.1/tcp/7400/p2p/" + id.String()},
		{"p2p not last", "/p2p/" + id.String() + "/ip4/127.0.0.1/tcp/1"},
		{"too long", "/dns4/" + strings.Repeat("a", maxAddressLen) + "/tcp/1/p2p/" + id.String()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseServerAddress(raft.ServerAddress(tc.addr))
			if !errors.Is(err, ErrBadAddress) {
				t.Fatalf("ParseServerAddress(%.40q) = %v, want ErrBadAddress", tc.addr, err)
			}
		})
	}
}

func FuzzParseServerAddress(f *testing.F) {
	id := "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
	for _, s := range []string{"", id, "/ip4/127.0.0.1/tcp/7400/p2p/" + id, "/ip6/::1/udp/1/quic-v1/p2p/" + id,
		"/p2p/" + id, "/dns4/example.com/tcp/1/p2p/" + id, "/ip4/1.2.3.4", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		info, err := ParseServerAddress(raft.ServerAddress(s))
		if err != nil {
			if !errors.Is(err, ErrBadAddress) {
				t.Fatalf("error %v does not wrap ErrBadAddress", err)
			}
			return
		}
		if info.ID == "" {
			t.Fatalf("accepted %q with an empty peer ID", s)
		}
		// What parses re-encodes to an address that parses to the same peer.
		again, err := ParseServerAddress(ServerAddress(info.ID, info.Addrs))
		if err != nil || again.ID != info.ID {
			t.Fatalf("re-encoding %q: %v, %v", s, again, err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr bool
	}{
		{"default", func(*Config) {}, false},
		{"zero pool", func(c *Config) { c.MaxPool = 0 }, true},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, true},
		{"zero timeout", func(c *Config) { c.Timeout = 0 }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mutate(&c)
			err := c.Validate()
			if tc.wantErr != (err != nil) || (err != nil && !errors.Is(err, ErrInvalidConfig)) {
				t.Fatalf("Validate() = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
	if _, _, err := NewTransport(nil, nil, Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("NewTransport with zero config: %v, want ErrInvalidConfig", err)
	}
}

func TestPreferredOrder(t *testing.T) {
	m := multiaddr.StringCast
	tests := []struct {
		name  string
		addrs []string
		want  string
	}{
		{"lan before loopback", []string{"/ip4/127.0.0.1/tcp/1", "/ip4/192.168.1.5/tcp/1"}, "/ip4/192.168.1.5/tcp/1"},
		{"ipv6 loopback last", []string{"/ip6/::1/tcp/1", "/ip4/10.0.0.2/tcp/1"}, "/ip4/10.0.0.2/tcp/1"},
		{"stable among non-loopback", []string{"/ip4/10.0.0.9/tcp/1", "/ip4/10.0.0.2/tcp/1"}, "/ip4/10.0.0.2/tcp/1"},
		{"loopback only", []string{"/ip4/127.0.0.1/tcp/1"}, "/ip4/127.0.0.1/tcp/1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in []multiaddr.Multiaddr
			for _, s := range tc.addrs {
				in = append(in, m(s))
			}
			got := preferredOrder(in)
			if got[0].String() != tc.want {
				t.Fatalf("first = %s, want %s", got[0], tc.want)
			}
			if in[0].String() != tc.addrs[0] {
				t.Fatal("input slice modified")
			}
		})
	}
}
