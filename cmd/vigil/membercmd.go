package main

import (
	"context"
	"time"

	"connectrpc.com/connect"
	"github.com/multiformats/go-multiaddr"
	"github.com/spf13/cobra"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/admin/client"
)

// sendFunc is a write method of the admin client, as a method expression (client.Client.RevokeAgent).
type sendFunc = func(client.Client, context.Context, *connect.Request[adminv1.SignedCommand]) (*connect.Response[adminv1.WriteResponse], error)

func newMembersAdmitCmd() *cobra.Command {
	f := &adminFlags{}
	var nodeID, site string
	var addrs []string
	var nonVoter bool
	cmd := &cobra.Command{
		Use:   "admit NAME --node-id ID --addr MULTIADDR",
		Short: "Admit a node to the cluster (before it starts)",
		Long: `admit records an operator-signed admission of a node's key. Admit a node before you start it:
the other nodes refuse its connections until the registry holds it. Once the admission is committed,
the Raft leader adds the node to the Raft configuration, as a voter unless --non-voter.`,
		Example: `  vigil keygen --out /var/lib/vigil/keys/node.key --role node     # on the new node: prints its ID
  vigil members admit depot-2 --node-id 12D3KooW… --site depot --addr /ip4/10.0.0.6/tcp/7400`,
		Args: adminArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := identity.ValidateName(args[0]); err != nil {
				return usagef("NAME: %v", err)
			}
			id, err := identity.ParseID(nodeID)
			if err != nil {
				return usagef("--node-id %q: %v", nodeID, err)
			}
			for _, a := range addrs {
				if _, err := multiaddr.NewMultiaddr(a); err != nil {
					return usagef("--addr %q: %v", a, err)
				}
			}
			entry := identity.NodeEntry{Name: args[0], Key: id.PublicKey(), Site: site, Voter: !nonVoter, Addrs: addrs}
			return signAndSend(cmd, f, "members admit", &identity.AdmitNode{Node: entry},
				client.Client.AdmitNode)
		},
	}
	f.register(cmd, signedFlags)
	cmd.Flags().StringVar(&nodeID, "node-id", "", "the node's peer ID (printed by vigil keygen --role node)")
	cmd.Flags().StringVar(&site, "site", "site-1", "the node's site")
	cmd.Flags().StringArrayVar(&addrs, "addr", nil, "libp2p address the node listens on, without /p2p (repeatable)")
	cmd.Flags().BoolVar(&nonVoter, "non-voter", false, "replicate the registry without voting in Raft")
	return cmd
}

func newMembersRemoveCmd() *cobra.Command {
	f := &adminFlags{}
	cmd := &cobra.Command{
		Use:     "remove NAME",
		Short:   "Remove a node: it leaves Raft and every node refuses it",
		Example: `  vigil members remove depot-2`,
		Args:    adminArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return signAndSend(cmd, f, "members remove", &identity.RemoveNode{Name: args[0]},
				client.Client.RemoveNode)
		},
	}
	f.register(cmd, signedFlags)
	return cmd
}

// newAgentStatusCmds are the one-operator status changes of an agent: quarantine, release, renew.
func newAgentStatusCmds() []*cobra.Command {
	simple := func(use, short, example, what string, payload func(name, reason string, ttl time.Duration) identity.Payload, send sendFunc, withReason, withTTL bool) *cobra.Command {
		f := &adminFlags{}
		var reason string
		var ttl time.Duration
		cmd := &cobra.Command{
			Use: use + " NAME|ID", Short: short, Example: example,
			Args: adminArgs(cobra.ExactArgs(1)),
			RunE: func(cmd *cobra.Command, args []string) error {
				if withTTL && ttl <= 0 {
					return usagef("--ttl: must be positive")
				}
				name, err := agentName(cmd, f, args[0])
				if err != nil {
					return err
				}
				return signAndSend(cmd, f, what, payload(name, reason, ttl), send)
			},
		}
		f.register(cmd, signedFlags)
		if withReason {
			cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit history)")
		}
		if withTTL {
			cmd.Flags().DurationVar(&ttl, "ttl", 30*24*time.Hour, "new registration lifetime from now")
		}
		return cmd
	}
	return []*cobra.Command{
		simple("quarantine", "Quarantine an agent: cut off at once everywhere, reversible with release",
			`  vigil agent quarantine planner-1 --reason "unusual tool calls"`, "agent quarantine",
			func(n, r string, _ time.Duration) identity.Payload {
				return &identity.QuarantineAgent{Name: n, Reason: r}
			},
			client.Client.QuarantineAgent, true, false),
		simple("release", "Release a quarantined agent", `  vigil agent release planner-1`, "agent release",
			func(n, _ string, _ time.Duration) identity.Payload { return &identity.ReleaseAgent{Name: n} },
			client.Client.ReleaseAgent, false, false),
		simple("renew", "Renew an agent's registration before it expires", `  vigil agent renew planner-1 --ttl 720h`, "agent renew",
			func(n, _ string, ttl time.Duration) identity.Payload {
				return &identity.RenewAgent{Name: n, ExpiresAt: time.Now().Add(ttl).UTC().Truncate(time.Second)}
			},
			client.Client.RenewAgent, false, true),
	}
}
