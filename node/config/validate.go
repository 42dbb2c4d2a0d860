package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/vigil-mesh/vigil/identity"
)

// maxSocketPath is the longest Unix socket path every supported OS accepts (sun_path is 104
// bytes on macOS and the BSDs, 108 on Linux, both counting the NUL).
const maxSocketPath = 103

// Validate checks every field and the cross-field rules. It returns nil or every problem,
// joined; each wraps ErrInvalid or ErrRefused and starts with the key path.
func (c Config) Validate() error {
	var errs []error
	for _, p := range c.check() {
		if p.Severity == SeverityError {
			errs = append(errs, fmt.Errorf("config: %s: %s: %w", p.Key, p.Message, p.Err))
		}
	}
	return errors.Join(errs...)
}

// basicAuthMessage explains why shared-password authentication is refused. Printed after the key,
// it reads "auth.method: basic sends a shared password; …".
const basicAuthMessage = "basic sends a shared password; Vigil authenticates every node by its own key: use mutual_tls (libp2p TLS 1.3) or noise"

// check returns every problem of c without file or line.
func (c Config) check() []Problem {
	var ps []Problem
	bad := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: key, Message: fmt.Sprintf(format, args...), Severity: SeverityError, Err: ErrInvalid})
	}
	name := func(key, v string, required bool) {
		if v == "" && !required {
			return
		}
		if err := identity.ValidateName(v); err != nil {
			bad(key, "%q is not a valid name: want 1-63 characters [a-z0-9._-], starting with [a-z0-9]", v)
		}
	}
	name("node.name", c.Node.Name, true)
	name("node.site", c.Node.Site, false)
	if c.Node.DataDir == "" {
		bad("node.data_dir", "required")
	}

	if len(c.Listen.Libp2p) == 0 {
		bad("listen.libp2p", "at least one address is required")
	}
	for i, a := range c.Listen.Libp2p {
		checkTransportAddr(bad, fmt.Sprintf("listen.libp2p[%d]", i), a)
	}
	checkHostPort(bad, "listen.admin", c.Listen.Admin)
	checkHostPort(bad, "listen.http", c.Listen.HTTP)
	// Port 0 asks the kernel for a free port, so two ":0" addresses never clash.
	if c.Listen.Admin != "" && c.Listen.Admin == c.Listen.HTTP && !strings.HasSuffix(c.Listen.HTTP, ":0") {
		bad("listen.http", "%q is also listen.admin: give each its own port", c.Listen.HTTP)
	}
	switch {
	case c.Listen.AdminSocket == "":
		bad("listen.admin_socket", "required")
	case len(c.Listen.AdminSocket) > maxSocketPath:
		bad("listen.admin_socket", "%d bytes long: a Unix socket path must be at most %d bytes; use a shorter data_dir or an absolute admin_socket", len(c.Listen.AdminSocket), maxSocketPath)
	}
	for i, a := range c.Advertise {
		checkTransportAddr(bad, fmt.Sprintf("advertise[%d]", i), a)
	}
	for i, a := range c.Join {
		checkJoinAddr(bad, fmt.Sprintf("join[%d]", i), a)
	}

	minDur := func(key string, d, lo time.Duration) {
		if d < lo {
			bad(key, "%s is below %s", d, lo)
		}
	}
	minDur("raft.heartbeat_timeout", c.Raft.HeartbeatTimeout, 5*time.Millisecond)
	minDur("raft.election_timeout", c.Raft.ElectionTimeout, 5*time.Millisecond)
	if c.Raft.CommitTimeout <= 0 {
		bad("raft.commit_timeout", "%s: must be positive", c.Raft.CommitTimeout)
	}
	if c.Raft.SnapshotThreshold == 0 {
		bad("raft.snapshot_threshold", "must be positive")
	}

	switch c.Auth.Method {
	case MethodMutualTLS, MethodNoise:
	case "basic", "Basic", "BASIC":
		ps = append(ps, Problem{Key: "auth.method", Message: basicAuthMessage, Severity: SeverityError, Err: ErrRefused})
	case "none", "insecure", "plaintext":
		ps = append(ps, Problem{Key: "auth.method", Message: fmt.Sprintf("%s: Vigil has no unauthenticated transport; every peer proves its own key: use mutual_tls (libp2p TLS 1.3) or noise", c.Auth.Method), Severity: SeverityError, Err: ErrRefused})
	default:
		bad("auth.method", "%q: allowed values are mutual_tls (libp2p TLS 1.3) and noise", c.Auth.Method)
	}
	if c.Auth.Key == "" {
		bad("auth.key", "required")
	}
	switch c.Auth.Enforcement {
	case EnforcementBestEffort:
	case EnforcementStrict:
		if c.Auth.MaxStaleness <= 0 {
			bad("auth.max_staleness", "%s: strict enforcement needs a positive max_staleness (e.g. 30s)", c.Auth.MaxStaleness)
		}
	default:
		bad("auth.enforcement", "%q: allowed values are best_effort and strict", c.Auth.Enforcement)
	}
	if c.Auth.MaxStaleness < 0 {
		bad("auth.max_staleness", "%s: must not be negative", c.Auth.MaxStaleness)
	}
	minDur("auth.reverify_interval", c.Auth.ReverifyInterval, time.Second)
	if c.Genesis == "" {
		bad("genesis", "required")
	}
	checkHostPort(bad, "gossip.bind", c.Gossip.Bind)
	if c.Gossip.Advertise != "" {
		checkHostPort(bad, "gossip.advertise", c.Gossip.Advertise)
		if h, _, err := net.SplitHostPort(c.Gossip.Advertise); err == nil && net.ParseIP(h) == nil {
			bad("gossip.advertise", "%q: the host must be an IP address", c.Gossip.Advertise)
		}
	}
	if h, _, err := net.SplitHostPort(c.Gossip.Bind); err == nil && net.ParseIP(h) == nil {
		bad("gossip.bind", "%q: the host must be an IP address (0.0.0.0 for every interface)", c.Gossip.Bind)
	}
	switch c.Gossip.Profile {
	case GossipLAN, GossipWAN, GossipLocal:
	default:
		bad("gossip.profile", "%q: allowed values are lan, wan and local", c.Gossip.Profile)
	}
	for i, a := range c.Gossip.Join {
		checkHostPort(bad, fmt.Sprintf("gossip.join[%d]", i), a)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q: allowed values are debug, info, warn and error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		bad("log.format", "%q: allowed values are json and text", c.Log.Format)
	}
	if c.Agents.MaxMessageBytes == 0 || c.Agents.MaxMessageBytes > 64<<10 {
		bad("agents.max_message_bytes", "%d: must be 1 to 65536", c.Agents.MaxMessageBytes)
	}
	if c.Agents.TelemetryRecords == 0 || c.Agents.TelemetryRecords > 10_000_000 {
		bad("agents.telemetry_records", "%d: must be 1 to 10000000", c.Agents.TelemetryRecords)
	}
	return ps
}

// checkTransportAddr accepts a libp2p multiaddr without /p2p (listen and advertise addresses).
func checkTransportAddr(bad func(string, string, ...any), key, s string) {
	m, err := ma.NewMultiaddr(s)
	if err != nil {
		bad(key, "%q is not a multiaddr (e.g. /ip4/0.0.0.0/tcp/7400): %v", s, err)
		return
	}
	if _, id := peer.SplitAddr(m); id != "" {
		bad(key, "%q: leave out /p2p/<peer id>; the node's own ID comes from its key", s)
		return
	}
	if !hasPort(m) {
		bad(key, "%q: needs a /tcp/<port> or /udp/<port>/quic-v1 part", s)
	}
}

// checkJoinAddr accepts a multiaddr that ends in /p2p/<Ed25519 peer id>.
func checkJoinAddr(bad func(string, string, ...any), key, s string) {
	m, err := ma.NewMultiaddr(s)
	if err != nil {
		bad(key, "%q is not a multiaddr (e.g. /ip4/10.0.0.5/tcp/7400/p2p/12D3Koo…): %v", s, err)
		return
	}
	transport, pid := peer.SplitAddr(m)
	if pid == "" {
		bad(key, "%q: must end in /p2p/<peer id> of the node to join, so that it is authenticated", s)
		return
	}
	if _, err := identity.IDFromPeer(pid); err != nil {
		bad(key, "%q: peer id is not an Ed25519 node ID: %v", s, err)
		return
	}
	if transport == nil || !hasPort(transport) {
		bad(key, "%q: needs a /tcp/<port> or /udp/<port>/quic-v1 part before /p2p", s)
	}
}

func hasPort(m ma.Multiaddr) bool {
	for _, c := range m {
		if p := c.Protocol().Code; p == ma.P_TCP || p == ma.P_UDP {
			return true
		}
	}
	return false
}

// checkHostPort accepts host:port with a numeric port 0-65535 (0 picks a free port).
func checkHostPort(bad func(string, string, ...any), key, s string) {
	if s == "" {
		bad(key, "required (host:port)")
		return
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		bad(key, "%q: want host:port, e.g. 127.0.0.1:7402", s)
		return
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || port == "" || n > 65535 {
		bad(key, "%q: port must be a number from 0 to 65535", s)
	}
}
