package identity

import (
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// ClusterID identifies a cluster; chosen at random by `vigil init`. The zero value means "none".
type ClusterID [16]byte

// NewClusterID draws a random, non-zero cluster ID.
func NewClusterID(rand io.Reader) (ClusterID, error) {
	var c ClusterID
	if _, err := io.ReadFull(rand, c[:]); err != nil {
		return ClusterID{}, fmt.Errorf("identity: new cluster id: %w", err)
	}
	if c.IsZero() {
		return ClusterID{}, errf(ErrInvalid, "cluster id: random source returned zeros")
	}
	return c, nil
}

// ParseClusterID parses 32 lowercase hex characters.
func ParseClusterID(s string) (ClusterID, error) {
	var c ClusterID
	if len(s) != 32 || strings.ToLower(s) != s {
		return c, errf(ErrMalformed, "cluster id: want 32 lowercase hex characters")
	}
	if _, err := hex.Decode(c[:], []byte(s)); err != nil {
		return ClusterID{}, errf(ErrMalformed, "cluster id: %v", err)
	}
	return c, nil
}

// String returns 32 lowercase hex characters.
func (c ClusterID) String() string { return hex.EncodeToString(c[:]) }

// IsZero reports whether c is the zero value.
func (c ClusterID) IsZero() bool { return c == ClusterID{} }

// SPIFFEID is a parsed SPIFFE ID: spiffe://<trust-domain><path>.
type SPIFFEID struct {
	td   string
	path string // "" or "/seg/seg…"
}

// NewAgentSPIFFEID returns spiffe://<trustDomain>/agent/<agentName>.
func NewAgentSPIFFEID(trustDomain, agentName string) (SPIFFEID, error) {
	if err := validateTrustDomain(trustDomain); err != nil {
		return SPIFFEID{}, err
	}
	if err := ValidateName(agentName); err != nil {
		return SPIFFEID{}, err
	}
	return SPIFFEID{td: trustDomain, path: "/agent/" + agentName}, nil
}

// ParseSPIFFEID parses a SPIFFE ID following the SPIFFE-ID specification: scheme "spiffe",
// trust domain of [a-z0-9._-], path segments of [a-zA-Z0-9._-], no empty, "." or ".." segments,
// no query, fragment, port or user info, no trailing slash.
func ParseSPIFFEID(s string) (SPIFFEID, error) {
	const scheme = "spiffe://"
	if len(s) > MaxSPIFFELen {
		return SPIFFEID{}, errf(ErrMalformed, "spiffe id: longer than %d bytes", MaxSPIFFELen)
	}
	if !strings.HasPrefix(s, scheme) {
		return SPIFFEID{}, errf(ErrMalformed, "spiffe id %q: scheme must be spiffe://", s)
	}
	rest := s[len(scheme):]
	td, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		td, path = rest[:i], rest[i:]
	}
	if err := validateTrustDomain(td); err != nil {
		return SPIFFEID{}, errf(ErrMalformed, "spiffe id %q: bad trust domain", s)
	}
	if path != "" {
		for _, seg := range strings.Split(path[1:], "/") {
			if seg == "" || seg == "." || seg == ".." {
				return SPIFFEID{}, errf(ErrMalformed, "spiffe id %q: empty, '.' or '..' path segment", s)
			}
			for i := 0; i < len(seg); i++ {
				c := seg[i]
				if !(isLowerAlnum(c) || (c >= 'A' && c <= 'Z') || c == '.' || c == '-' || c == '_') {
					return SPIFFEID{}, errf(ErrMalformed, "spiffe id %q: bad character %q in path", s, c)
				}
			}
		}
	}
	return SPIFFEID{td: td, path: path}, nil
}

// String returns the URI form.
func (s SPIFFEID) String() string {
	if s.td == "" {
		return ""
	}
	return "spiffe://" + s.td + s.path
}

// TrustDomain returns the trust domain.
func (s SPIFFEID) TrustDomain() string { return s.td }

// Path returns the path ("" or starting with "/").
func (s SPIFFEID) Path() string { return s.path }

// AgentName returns the agent name when the path is /agent/<valid name>.
func (s SPIFFEID) AgentName() (string, bool) {
	name, ok := strings.CutPrefix(s.path, "/agent/")
	if !ok || ValidateName(name) != nil {
		return "", false
	}
	return name, true
}

// IsZero reports whether s is the zero value.
func (s SPIFFEID) IsZero() bool { return s.td == "" }

func isLowerAlnum(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') }

// ValidateName checks an agent, node or operator name: [a-z0-9][a-z0-9._-]{0,62}.
func ValidateName(name string) error {
	if name == "" {
		return invalidf("name", "empty")
	}
	if len(name) > MaxNameLen {
		return invalidf("name", "%q longer than %d bytes", name, MaxNameLen)
	}
	if !isLowerAlnum(name[0]) {
		return invalidf("name", "%q must start with [a-z0-9]", name)
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !isLowerAlnum(c) && c != '.' && c != '_' && c != '-' {
			return invalidf("name", "%q: character %q not in [a-z0-9._-]", name, c)
		}
	}
	return nil
}

func validateTrustDomain(td string) error {
	if td == "" || len(td) > MaxTrustDomainLen {
		return invalidf("trust_domain", "must be 1..%d bytes", MaxTrustDomainLen)
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !isLowerAlnum(c) && c != '.' && c != '_' && c != '-' {
			return invalidf("trust_domain", "%q: character %q not in [a-z0-9._-]", td, c)
		}
	}
	return nil
}
