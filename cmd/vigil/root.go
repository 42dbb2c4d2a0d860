package main

import (
	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "vigil",
		Short: "Vigil: a zero-trust mesh for autonomous AI agents",
		Long: `Vigil authenticates every agent, node and operator by its own Ed25519 key, keeps the
registry of who may act replicated by Raft on every node, and cuts a revoked agent off everywhere.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newKeygenCmd(), newInitCmd(), newDevCmd(), newConfigCmd())
	return root
}
