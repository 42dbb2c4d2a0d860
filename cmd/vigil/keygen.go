package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/vigil-mesh/vigil/identity"
)

func newKeygenCmd() *cobra.Command {
	var out, role string
	cmd := &cobra.Command{
		Use:   "keygen --out FILE [--role agent|node|operator]",
		Short: "Generate an Ed25519 key and print its peer ID",
		Long: `keygen writes a new Ed25519 private key to FILE with mode 0600 and prints the key's ID
(its libp2p peer ID), which is how the registry names the principal. It never overwrites a file.`,
		Example: `  vigil keygen --out agent.key --role agent
  vigil keygen --out ops/alice.key --role operator`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("keygen: --out is required")
			}
			if out == "-" {
				return usagef("keygen: --out -: a private key is never written to standard output; name a file")
			}
			r, err := parseRole(role)
			if err != nil {
				return err
			}
			k, err := identity.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			if err := identity.WriteKeyFile(out, r, k); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), k.ID())
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the private key to (mode 0600; must not exist; missing folders are created 0700)")
	cmd.Flags().StringVar(&role, "role", "agent", "role the key is for: agent, node or operator")
	return cmd
}

func parseRole(s string) (identity.Role, error) {
	switch s {
	case "agent":
		return identity.RoleAgent, nil
	case "node":
		return identity.RoleNode, nil
	case "operator":
		return identity.RoleOperator, nil
	}
	return 0, usagef("--role %q: must be agent, node or operator", s)
}
