// Package admin serves the Vigil admin API (DESIGN.md §7): a protobuf service
// (proto/vigil/admin/v1/admin.proto, generated code in adminv1) served with connect-go, so gRPC,
// gRPC-Web and JSON over HTTP all work, on a mutual-TLS port (:7401) and on a local Unix socket.
//
// Usage:
//
//	cfg := admin.DefaultConfig()
//	cfg.Key, cfg.Logger = nodeKey, logger // the TLS certificate is derived from the node key
//	srv := admin.NewServer(consensusNode, cfg)
//	ln, _ := net.Listen("tcp", ":7401")
//	if err := srv.ServeTLS(ln); err != nil { … }              // serves in the background
//	if err := srv.ServeUnix(dataDir + "/admin.sock"); err != nil { … }
//	defer srv.Close()
//
// Clients: package node/admin/client (Dial with an operator key and the node's peer ID, or
// DialUnix).
//
// Authentication: certificates come from libp2p keys (go-libp2p's TLS identity), so a remote
// caller is authenticated by the same Ed25519 key that signs its commands. The client pins the
// node's peer ID; the server requires a client certificate (no certificate, no handshake).
// Callers on the Unix socket have the "local" role: the socket is mode 0600 from creation.
//
// Authorisation: MethodRoles, the one table of procedure → roles, checked by one interceptor
// before any handler runs, per request against the local registry (a removed operator or a
// revoked agent is refused on its next call, even on a kept-alive connection). Deny by default.
//
// Invariants:
//   - The server never holds operator keys. A write carries an identity.Command encoded and
//     signed on the client; the server checks it decodes and that its kind is the method's,
//     then proposes it. Every replica verifies signatures and authority again before applying.
//   - A refused call changes nothing: validation and authorisation run before Propose, and the
//     registry applies a command wholly or not at all.
//   - Every request is capped (Config.MaxRequestBytes, 1 MiB: larger → ResourceExhausted before
//     decoding); every string filter is capped before use; audit responses are capped
//     (Config.AuditMaxLimit).
//   - Errors name the field and say why; a registry or consensus rejection carries its stable
//     code (identity.CodeOf, or "consensus.*") in an ErrorDetail and the Vigil-Error-Code header.
package admin
