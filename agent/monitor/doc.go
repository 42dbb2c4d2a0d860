// Package monitor is the `vigil monitor` sidecar: it gives an agent written in any language the
// operations of the Go SDK over a local HTTP API, and reports the agent process's resource use
// (sampled from /proc) to the agent's node as metric events.
//
// The sidecar runs over a Backend, the part of *agent.Client it uses:
//
//	c, err := agent.Connect(ctx, agentCfg)
//	// …
//	code, err := monitor.Run(ctx, c, monitor.RunConfig{
//		API:      monitor.DefaultConfig(), // unix:vigil-monitor.sock, mode 0600
//		Command:  []string{"python3", "agent.py"},
//		Interval: 10 * time.Second,
//	})
//
// The API (see docs/monitor.md): GET /v1/registration, POST /v1/messages, GET /v1/messages
// (long poll), GET /v1/messages/stream (server-sent events), POST /v1/events, GET /v1/status,
// GET /healthz.
//
// Invariants:
//   - The API listens only on a unix socket created with mode 0600 or on a loopback TCP address:
//     it carries the agent's authority.
//   - Every request body is capped (Config.MaxBody) before it is read; JSON is decoded strictly
//     (an unknown field, a wrong type or a missing required field is a 400 naming the field).
//   - Received messages wait in a bounded queue; when it is full the oldest is dropped and the
//     drop is counted and reported to the next reader.
//   - Once the node cuts the agent off, /v1/status says so with the node's reason, the stream
//     sends "event: cut_off", and sends are refused with code "cut_off".
//   - The /proc parsing is pure and tested on fixed inputs; network figures are the totals of the
//     process's network namespace (loopback excluded), since Linux does not count them per process.
package monitor
