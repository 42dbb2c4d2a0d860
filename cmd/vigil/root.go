package main

import (
	"fmt"
	"runtime/debug"
	"strings"

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
	// An unknown subcommand is a usage error (exit code 2), like a bad flag.
	root.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("unknown command %q; see vigil --help", args[0])
		}
		return nil
	}
	root.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newKeygenCmd(), newInitCmd(), newDevCmd(), newConfigCmd(), newNodeCmd(),
		newStatusCmd(), newMembersCmd(), newAgentCmd(), newVersionCmd())
	root.AddCommand(newPolicyCmd(), newOperatorsCmd(), newAuditCmd(), newResponseCmd(), newApproveCmd(), newSubmitCmd())
	root.AddCommand(newDetectCmd())
	root.AddCommand(newGossipCmd())
	root.AddCommand(newMonitorCmd())
	root.AddCommand(newAlertsCmd(), newDecisionsCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), versionLine())
			return nil
		},
	}
}

// versionLine is "vigil VERSION (commit REV[, modified], GO)": the commit and Go version come
// from the build information Go embeds, so a binary built without -ldflags still says what it is.
func versionLine() string {
	line := "vigil " + version
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return line
	}
	var rev string
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	var parts []string
	if rev != "" {
		c := "commit " + rev[:min(len(rev), 12)]
		if modified {
			c += ", modified"
		}
		parts = append(parts, c)
	}
	parts = append(parts, info.GoVersion)
	return line + " (" + strings.Join(parts, ", ") + ")"
}
