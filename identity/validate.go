package identity

import (
	"slices"
	"unicode"

	ma "github.com/multiformats/go-multiaddr"
)

// Field validators: each returns ErrInvalid with a message naming the field.

func validateKeyField(field string, k PublicKey) error {
	if k.IsZero() {
		return invalidf(field, "zero key")
	}
	if !strongKey(k) { // see keycheck.go: small-order keys are forgeable by anyone
		return invalidf(field, "key %x is not a canonical Ed25519 point of large order", k.b)
	}
	return nil
}

func validateNameField(field, name string) error {
	if err := ValidateName(name); err != nil {
		return invalidf(field, "%q is not a valid name ([a-z0-9][a-z0-9._-]{0,62})", name)
	}
	return nil
}

// validateLabels: keys [a-z0-9][a-z0-9._/-]{0,62}; values up to 63 bytes without control
// characters.
func validateLabels(m map[string]string) error {
	if len(m) > MaxLabels {
		return invalidf("labels", "%d labels, max %d", len(m), MaxLabels)
	}
	for _, k := range slices.Sorted(mapsKeys(m)) { // sorted: the same error on every replica
		v := m[k]
		if k == "" || len(k) > MaxLabelKeyLen || !isLowerAlnum(k[0]) {
			return invalidf("labels", "key %q must match [a-z0-9][a-z0-9._/-]{0,62}", k)
		}
		for i := 1; i < len(k); i++ {
			if c := k[i]; !isLowerAlnum(c) && c != '.' && c != '_' && c != '-' && c != '/' {
				return invalidf("labels", "key %q must match [a-z0-9][a-z0-9._/-]{0,62}", k)
			}
		}
		if err := validateText("labels["+k+"]", v, MaxLabelValueLen); err != nil {
			return err
		}
	}
	return nil
}

// validateCapabilities: each 1..128 bytes of printable ASCII without spaces (for example
// "send:agent-b", "call:search.web", "tool:*").
func validateCapabilities(caps []string) error {
	if len(caps) > MaxCapabilities {
		return invalidf("capabilities", "%d capabilities, max %d", len(caps), MaxCapabilities)
	}
	for _, c := range caps {
		if c == "" || len(c) > MaxCapabilityLen {
			return invalidf("capabilities", "%q must be 1..%d bytes", c, MaxCapabilityLen)
		}
		for i := 0; i < len(c); i++ {
			if c[i] <= ' ' || c[i] > '~' {
				return invalidf("capabilities", "%q: only printable ASCII without spaces", c)
			}
		}
	}
	return nil
}

// validateText: valid UTF-8 (guaranteed by the decoder), at most max bytes, no control
// characters (so audit details stay one line).
func validateText(field, s string, max int) error {
	if len(s) > max {
		return invalidf(field, "longer than %d bytes", max)
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return invalidf(field, "contains control or invalid characters")
		}
	}
	return nil
}

func validateNodeEntry(n *NodeEntry) error {
	if err := validateNameField("node.name", n.Name); err != nil {
		return err
	}
	if err := validateKeyField("node.key", n.Key); err != nil {
		return err
	}
	if n.Site != "" {
		if err := validateNameField("node.site", n.Site); err != nil {
			return err
		}
	}
	if len(n.Addrs) > MaxAddrs {
		return invalidf("node.addrs", "%d addresses, max %d", len(n.Addrs), MaxAddrs)
	}
	for i, a := range n.Addrs {
		if len(a) > MaxAddrLen {
			return invalidf("node.addrs", "address %d longer than %d bytes", i, MaxAddrLen)
		}
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return invalidf("node.addrs", "%q: %v", a, err)
		}
		if m.String() != a {
			return invalidf("node.addrs", "%q is not canonical (want %q)", a, m.String())
		}
		if _, err := m.ValueForProtocol(ma.P_P2P); err == nil {
			return invalidf("node.addrs", "%q must not contain /p2p", a)
		}
	}
	return nil
}
