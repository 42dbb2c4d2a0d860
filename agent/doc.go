// Package agent is the Go SDK for programs that run as agents on a Vigil mesh: load or create a
// key, connect to a node (reconnecting with backoff), answer the node's re-verification
// challenges, send messages to other agents naming a capability, receive them with a handler per
// capability, report events (tool calls, metrics), and request a key rotation.
//
//	key, _ := agent.LoadOrCreateKey("planner.key")
//	cfg := agent.DefaultConfig()
//	cfg.Key, cfg.Nodes = key, []string{"/ip4/127.0.0.1/tcp/7400/p2p/12D3KooW…"}
//	c, err := agent.Connect(ctx, cfg) // returns once attached
//	defer c.Close()
//	c.Handle("ask", func(ctx context.Context, m agent.Message) error { return nil })
//	_, err = c.Send(ctx, "worker-1", "ask", []byte("hi")) // *agent.RefusedError names the rule
//	if errors.Is(err, agent.ErrThrottled) { … } // the node throttles this agent: slow down
//
// The protocols, the capability rule and the reconnection policy are in docs/agents.md; the wire
// format is node/agentproto's.
//
// Invariants: the agent's private key never leaves the process (only signatures do); every
// message is authorised by the sender's node and again by the destination's node, deny by
// default, and a refusal always comes back as a *RefusedError; a client cut off by its node
// (revoked, quarantined, expired) reports StateCutOff with the node's reason and retries only
// every ReconnectMax; Close is idempotent and stops every goroutine the client started.
package agent
