// Package client dials the Vigil admin API: over mutual TLS with a certificate derived from the
// caller's key (an operator's, usually) pinning the node's peer ID, or over the node's Unix
// socket. It returns the generated connect client, so every call takes a context.
//
// Usage:
//
//	c, err := client.Dial("10.0.0.5:7401", nodeID, operatorKey)
//	if err != nil { … }
//	st, err := c.Status(ctx, connect.NewRequest(&adminv1.StatusRequest{}))
//	cmd, _ := identity.NewCommand(cid, &identity.RevokeAgent{Name: "a1"}, time.Now(), rand.Reader)
//	cmd.Sign(operatorKey)                       // signed here: the server never sees the key
//	_, err = c.RevokeAgent(ctx, connect.NewRequest(&adminv1.SignedCommand{Command: cmd.Encode()}))
//	if errors.Is(client.IdentityError(err), identity.ErrNotFound) { … }
//
// Invariants: Dial refuses an empty node ID (the server is always pinned); the TLS session
// is never resumed without a fresh certificate check (session tickets are off).
package client
