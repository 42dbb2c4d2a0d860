package main

import (
	"context"
	"log/slog"

	"github.com/vigil-mesh/vigil/agent"
)

// monitorConnect (replaced in tests) loads (or creates) the agent's key and connects to the first reachable node.
var monitorConnect = func(ctx context.Context, f monitorFlags, log *slog.Logger) (monitorBackend, error) {
	key, err := agent.LoadOrCreateKey(f.key)
	if err != nil {
		return nil, err
	}
	cfg := agent.DefaultConfig()
	cfg.Key, cfg.Nodes, cfg.Security, cfg.Logger = key, f.nodes, f.security, log
	c, err := agent.Connect(ctx, cfg)
	if err != nil {
		return nil, err // not a nil *agent.Client in a non-nil monitorBackend
	}
	return c, nil
}
