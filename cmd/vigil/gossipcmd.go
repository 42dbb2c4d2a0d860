package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	"github.com/vigil-mesh/vigil/gossip"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/admin/client"
)

// newGossipCmd is `vigil gossip`: operations on the gossip mesh through a node's admin API.
func newGossipCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gossip",
		Short: "Operate the gossip mesh (keyring rotation)",
	}
	cmd.AddCommand(newGossipKeysCmd())
	return cmd
}

func newGossipKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "List and rotate the gossip encryption keyring on every node",
		Long: `Rotate the AES keys that encrypt gossip, on every admitted node at once.

Every change is signed on this machine with your operator key (--key, also over --socket).
The node you call checks the signature, applies the change to its keyring and its keyring file
(atomically), then sends the same signed change to every other admitted node over libp2p; each
checks the operator's signature itself before applying it, and answers with its keys or its
error. A node cannot change another node's keyring without an operator's signature.
Keys are shown by fingerprint (the first 8 bytes of their SHA-256, hex), never in clear.

Rotation: install the new key everywhere, make it primary with use, then remove the old one.`,
		Example: `  vigil gossip keys list --socket /var/lib/vigil/admin.sock
  vigil gossip keys install --generate --socket /var/lib/vigil/admin.sock
  vigil gossip keys use 3f2a9c0d11e4b7a8 --socket /var/lib/vigil/admin.sock
  vigil gossip keys remove 0c5e81d2a4f6b903 --socket /var/lib/vigil/admin.sock`,
	}
	cmd.AddCommand(newGossipKeysListCmd(), newGossipKeysInstallCmd(),
		newGossipKeysChangeCmd("use", "Make an installed key the primary (encrypting) key on every node",
			"  vigil gossip keys use 3f2a9c0d11e4b7a8 --node 10.0.0.5:7401 --node-id 12D3KooW… --key alice.key"),
		newGossipKeysChangeCmd("remove", "Remove a key that is no longer primary from every node",
			"  vigil gossip keys remove 0c5e81d2a4f6b903 --socket /var/lib/vigil/admin.sock -o json"))
	return cmd
}

func newGossipKeysListCmd() *cobra.Command {
	f := &adminFlags{}
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the keyring keys by fingerprint, with how many nodes hold and use each",
		Example: `  vigil gossip keys list --socket /var/lib/vigil/admin.sock --output json`,
		Args:    adminArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.dial()
			if err != nil {
				return err
			}
			ctx, cancel := adminCtx(cmd)
			defer cancel()
			resp, err := c.GossipKeys(ctx, connect.NewRequest(&adminv1.GossipKeysRequest{}))
			if err != nil {
				return adminCall("gossip keys list", err)
			}
			m := resp.Msg
			if f.output == "json" {
				if err := printJSON(cmd.OutOrStdout(), m); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "FINGERPRINT\tNODES\tPRIMARY ON")
				for _, k := range m.Keys {
					fmt.Fprintf(tw, "%s\t%d/%d\t%d\n", k.Fingerprint, k.Nodes, m.TotalNodes, k.PrimaryOn)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				printNodeErrors(cmd.ErrOrStderr(), m.Nodes)
			}
			return failedNodes("gossip keys list", m.Nodes)
		},
	}
	registerGossipFlags(cmd, f)
	return cmd
}

func newGossipKeysInstallCmd() *cobra.Command {
	f := &adminFlags{}
	var keyB64 string
	var generate bool
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install a key (not yet primary) on every node",
		Long: `Install a key on every admitted node, as a secondary key: nodes decrypt with it but still
encrypt with the primary key. Give it with --gossip-key (base64 of 16, 24 or 32 bytes; --key is
the operator key file, as in every admin command) or draw a new AES-256 key with --generate
(printed once, base64, so you can keep it).`,
		Example: `  vigil gossip keys install --generate --socket /var/lib/vigil/admin.sock
  vigil gossip keys install --gossip-key "$(cat new.key)" --node 10.0.0.5:7401 --node-id 12D3KooW… --key alice.key`,
		Args: adminArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var key []byte
			switch {
			case generate && keyB64 != "":
				return usagef("--gossip-key and --generate: give one, not both")
			case generate:
				k, err := gossip.GenerateKeyringKey(rand.Reader)
				if err != nil {
					return err
				}
				key = k
			case keyB64 != "":
				k, err := parseGossipKey(keyB64)
				if err != nil {
					return usagef("--gossip-key: %v", err)
				}
				key = k
			default:
				return usagef("--gossip-key BASE64 or --generate: which key to install")
			}
			c, err := f.dial()
			if err != nil {
				return err
			}
			req, err := signKeyringChange(cmd, f, c, identity.KeyringInstall, key)
			if err != nil {
				return err
			}
			ctx, cancel := adminCtx(cmd)
			defer cancel()
			resp, err := c.ChangeGossipKey(ctx, connect.NewRequest(req))
			if err != nil {
				return adminCall("gossip keys install", err)
			}
			if generate { // on stderr with --output json, so stdout stays one JSON document
				w := cmd.OutOrStdout()
				if f.output == "json" {
					w = cmd.ErrOrStderr()
				}
				fmt.Fprintf(w, "generated key (keep it secret): %s\n", base64.StdEncoding.EncodeToString(key))
			}
			return printKeyChange(cmd, f, "install", gossip.KeyFingerprint(key), resp.Msg)
		},
	}
	registerGossipFlags(cmd, f)
	cmd.Flags().StringVar(&keyB64, "gossip-key", "", "the key to install, base64 (16, 24 or 32 bytes)")
	cmd.Flags().BoolVar(&generate, "generate", false, "draw a new 32-byte key and print it")
	return cmd
}

// parseGossipKey decodes a base64 AES key (16, 24 or 32 bytes).
func parseGossipKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("not base64: %v", err)
	}
	if !gossip.ValidKeyLen(len(k)) {
		return nil, fmt.Errorf("%d bytes, want 16, 24 or 32", len(k))
	}
	return k, nil
}

// keyArg takes a fingerprint (16 hex characters) or the key itself in base64.
func keyArg(s string) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) == 16 && strings.Trim(strings.ToLower(s), "0123456789abcdef") == "" {
		return strings.ToLower(s), nil
	}
	k, err := parseGossipKey(s)
	if err != nil {
		return "", fmt.Errorf("%q is neither a fingerprint (16 hex characters) nor a key: %v", s, err)
	}
	return gossip.KeyFingerprint(k), nil
}

func newGossipKeysChangeCmd(op, short, example string) *cobra.Command {
	f := &adminFlags{}
	cmd := &cobra.Command{
		Use:     op + " FINGERPRINT|BASE64",
		Short:   short,
		Example: example,
		Args:    adminArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			fp, err := keyArg(args[0])
			if err != nil {
				return usagef("%s: %v", op, err)
			}
			c, err := f.dial()
			if err != nil {
				return err
			}
			kind, err := identity.ParseKeyringOpKind(op)
			if err != nil {
				return err
			}
			req, err := signKeyringChange(cmd, f, c, kind, []byte(fp))
			if err != nil {
				return err
			}
			ctx, cancel := adminCtx(cmd)
			defer cancel()
			resp, err := c.ChangeGossipKey(ctx, connect.NewRequest(req))
			if err != nil {
				return adminCall("gossip keys "+op, err)
			}
			return printKeyChange(cmd, f, op, fp, resp.Msg)
		},
	}
	registerGossipFlags(cmd, f)
	return cmd
}

// signKeyringChange builds the request for a keyring change: the operation, and the same
// operation signed with the operator key for the node's cluster (every node verifies it).
func signKeyringChange(cmd *cobra.Command, f *adminFlags, c client.Client, kind identity.KeyringOpKind, arg []byte) (*adminv1.ChangeGossipKeyRequest, error) {
	what := "gossip keys " + kind.String()
	key, err := f.operatorKey()
	if err != nil {
		return nil, err
	}
	ctx, cancel := adminCtx(cmd)
	defer cancel()
	cid, err := fetchClusterID(ctx, c, what)
	if err != nil {
		return nil, err
	}
	op, err := identity.NewKeyringOp(cid, kind, arg, time.Now(), rand.Reader)
	if err != nil {
		return nil, usageError{fmt.Errorf("%s: %w", what, err)}
	}
	if err := op.Sign(key); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	req := &adminv1.ChangeGossipKeyRequest{Op: kind.String(), SignedOp: op.Encode()}
	if kind == identity.KeyringInstall {
		req.Key = arg
	} else {
		req.Fingerprint = string(arg)
	}
	return req, nil
}

func printKeyChange(cmd *cobra.Command, f *adminFlags, op, fp string, m *adminv1.ChangeGossipKeyResponse) error {
	if f.output == "json" {
		if err := printJSON(cmd.OutOrStdout(), m); err != nil {
			return err
		}
		return failedNodes("gossip keys "+op, m.Nodes)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s %s: %d of %d nodes applied it\n", op, fp, len(m.Nodes)-int(m.Failed), len(m.Nodes))
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tID\tRESULT\tKEYS (PRIMARY FIRST)")
	for _, n := range m.Nodes {
		res := "ok"
		if !n.Ok {
			res = "error: " + n.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.NodeName, n.NodeId, res, strings.Join(n.Fingerprints, ","))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return failedNodes("gossip keys "+op, m.Nodes)
}

func printNodeErrors(w io.Writer, nodes []*adminv1.GossipNodeResult) {
	for _, n := range nodes {
		if !n.Ok {
			fmt.Fprintf(w, "node %s (%s): %s\n", n.NodeName, n.NodeId, n.Error)
		}
	}
}

// failedNodes makes the command fail (exit 1) when a node did not answer or refused.
func failedNodes(what string, nodes []*adminv1.GossipNodeResult) error {
	var bad []string
	for _, n := range nodes {
		if !n.Ok {
			bad = append(bad, n.NodeName)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s: %d of %d nodes failed: %s", what, len(bad), len(nodes), strings.Join(bad, ", "))
	}
	return nil
}

// registerGossipFlags adds the admin connection and output flags (the keyring methods read no
// registry, and their changes are signed keyring ops, not registry commands: --consistent is
// hidden and there is no --out).
func registerGossipFlags(cmd *cobra.Command, f *adminFlags) {
	f.register(cmd, readFlags)
	_ = cmd.PersistentFlags().MarkHidden("consistent")
}
