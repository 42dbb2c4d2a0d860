package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/admin/client"
)

// Environment variables that point the admin commands at a node (vigil dev writes them to
// DIR/vigil.env). A flag given on the command line wins over its variable; --node on the command
// line also sets $VIGIL_ADMIN_SOCKET aside (and $VIGIL_NODE_ID, unless --node equals
// $VIGIL_ADMIN_ADDR), and --socket on the command line sets $VIGIL_ADMIN_ADDR aside.
const (
	envAdminAddr     = "VIGIL_ADMIN_ADDR"
	envNodeID        = "VIGIL_NODE_ID"
	envOperatorKey   = "VIGIL_OPERATOR_KEY"
	envAdminSocket   = "VIGIL_ADMIN_SOCKET"
	adminCallTimeout = 30 * time.Second
)

// flagKind says which optional flags a command registers besides the connection and output
// flags.
type flagKind int

const (
	plainFlags  flagKind = iota // no --consistent, no --out: node-local reads and unsigned requests
	readFlags                   // --consistent: reads of the replicated registry
	signedFlags                 // --out: commands signed with the operator key (sent or written to a file)
)

// adminFlags are the connection and output flags shared by every admin command.
type adminFlags struct {
	node, nodeID, key, socket, output string
	consistent                        bool
	out                               string         // signed commands: sign and write an approval file instead of sending
	cmd                               *cobra.Command // the command the flags are registered on
}

func (f *adminFlags) register(cmd *cobra.Command, kind flagKind) {
	p := cmd.PersistentFlags()
	f.cmd = cmd
	p.StringVar(&f.node, "node", os.Getenv(envAdminAddr), "admin API address HOST:PORT (mutual TLS) [$"+envAdminAddr+
		"]; given here, it sets $"+envAdminSocket+" aside")
	p.StringVar(&f.nodeID, "node-id", os.Getenv(envNodeID), "peer ID of the node at --node, pinned [$"+envNodeID+
		", used only for the node at $"+envAdminAddr+"]")
	p.StringVar(&f.key, "key", os.Getenv(envOperatorKey), "operator key file: TLS identity, and signs commands [$"+envOperatorKey+"]")
	p.StringVar(&f.socket, "socket", os.Getenv(envAdminSocket), "node's admin Unix socket, instead of --node [$"+envAdminSocket+
		"]; given here, it sets $"+envAdminAddr+" aside")
	p.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	switch kind {
	case readFlags:
		p.BoolVar(&f.consistent, "consistent", false, "linearizable read through the leader instead of the node's local view")
	case signedFlags:
		p.StringVar(&f.out, "out", "", "sign the command and write it to this approval file instead of sending it (M-of-N: see vigil approve)")
	}
}

// explicit reports whether the flag name was given on the command line (not from the environment).
func (f *adminFlags) explicit(name string) bool {
	if f.cmd == nil {
		return false
	}
	fl := f.cmd.PersistentFlags().Lookup(name)
	return fl != nil && fl.Changed
}

// validate checks the flags that do not depend on the subcommand and settles which node to talk
// to: a flag given on the command line wins over every environment variable, so --node sets
// $VIGIL_ADMIN_SOCKET aside (and --socket $VIGIL_ADMIN_ADDR); both on the command line is an error.
func (f *adminFlags) validate() error {
	if f.output != "table" && f.output != "json" {
		return usagef("--output %q: must be table or json", f.output)
	}
	nodeSet, socketSet := f.explicit("node"), f.explicit("socket")
	switch {
	case nodeSet && socketSet:
		return usagef("--node and --socket both given: give one (the node over mutual TLS, or its Unix socket)")
	case nodeSet:
		f.socket = ""
		// $VIGIL_NODE_ID pins the node at $VIGIL_ADMIN_ADDR, not another one.
		if !f.explicit("node-id") && f.node != os.Getenv(envAdminAddr) {
			f.nodeID = ""
		}
	case socketSet:
		f.node = ""
	}
	if f.socket == "" && f.node == "" {
		return usagef("no node: set --node (with --node-id and --key) or --socket, or $%s / $%s", envAdminAddr, envAdminSocket)
	}
	return nil
}

// operatorKey loads the --key file (needed for TLS and for signing).
func (f *adminFlags) operatorKey() (identity.PrivateKey, error) {
	if f.key == "" {
		return identity.PrivateKey{}, usagef("--key: an operator key file is required [$%s]", envOperatorKey)
	}
	return identity.LoadKeyFile(f.key, identity.RoleOperator)
}

func (f *adminFlags) dial() (client.Client, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	if f.socket != "" {
		return client.DialUnix(f.socket), nil
	}
	if f.nodeID == "" {
		return nil, usagef("--node-id: required with --node %s (the node's peer ID is pinned; $%s counts only for $%s)",
			f.node, envNodeID, envAdminAddr)
	}
	id, err := identity.ParseID(f.nodeID)
	if err != nil {
		return nil, usagef("--node-id: %v", err)
	}
	k, err := f.operatorKey()
	if err != nil {
		return nil, err
	}
	return client.Dial(f.node, id.Peer(), k)
}

// adminCall wraps an API error so the message says what failed, why (once: the node's text
// without the transport's code word in front) and the code that scripts see.
func adminCall(what string, err error) error {
	if err == nil {
		return nil
	}
	return &adminError{what: what, msg: apiMessage(err), code: apiCode(err), err: err}
}

// adminError is an admin API refusal as the CLI reports it: "WHAT: WHY[; HINT] (code CODE)".
type adminError struct {
	what, msg, hint, code string
	err                   error
}

func (e *adminError) Error() string {
	s := e.what + ": " + e.msg
	if e.hint != "" {
		s += "; " + e.hint
	}
	if e.code != "" {
		s += " (code " + e.code + ")"
	}
	return s
}

func (e *adminError) Unwrap() error { return e.err }

// apiMessage is the node's explanation in err: for an API error its message alone (its
// Error() starts with the transport's code word, which apiCode reports instead).
func apiMessage(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) && ce.Message() != "" {
		return ce.Message()
	}
	return err.Error()
}

// apiCode is the stable code of an API error (a registry or consensus code), else the
// transport's code ("not_found", "unavailable", …), else "".
func apiCode(err error) string {
	if c := client.Code(err); c != "" && c != "unknown" {
		return c
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Code().String()
	}
	return ""
}

// adminArgs makes a positional-argument error a usage error (exit code 2).
func adminArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{fmt.Errorf("%s: %w", cmd.CommandPath(), err)}
		}
		return nil
	}
}

func adminCtx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), adminCallTimeout)
}

func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

func newStatusCmd() *cobra.Command {
	f := &adminFlags{}
	var withHash bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a node's raft state, leader and registry position",
		Example: `  vigil status --socket /var/lib/vigil/admin.sock
  vigil status --node 10.0.0.5:7401 --node-id 12D3KooW… --key alice.key --output json`,
		Args: adminArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.dial()
			if err != nil {
				return err
			}
			ctx, cancel := adminCtx(cmd)
			defer cancel()
			resp, err := c.Status(ctx, connect.NewRequest(&adminv1.StatusRequest{Consistent: f.consistent, IncludeHash: withHash}))
			if err != nil {
				return adminCall("status", err)
			}
			s := resp.Msg
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), s)
			}
			contact := "never"
			if s.LastContactMs >= 0 {
				contact = (time.Duration(s.LastContactMs) * time.Millisecond).String()
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			for _, kv := range [][2]string{{"node", s.NodeName}, {"id", s.NodeId}, {"state", s.RaftState},
				{"leader", s.LeaderId}, {"applied index", fmt.Sprint(s.AppliedIndex)}, {"last contact", contact},
				{"cluster", s.ClusterId}, {"trust domain", s.TrustDomain}, {"audit seq", fmt.Sprint(s.AuditSeq)},
				{"registry hash", s.RegistryHash}} {
				if kv[1] == "" && kv[0] == "registry hash" {
					continue // only with --hash
				}
				fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
			}
			return tw.Flush()
		},
	}
	f.register(cmd, readFlags)
	cmd.Flags().BoolVar(&withHash, "hash", false, "also show the registry hash (reads the whole registry)")
	return cmd
}

func newMembersCmd() *cobra.Command {
	f := &adminFlags{}
	cmd := &cobra.Command{
		Use:     "members",
		Short:   "List the admitted nodes, their site, raft role and gossip state",
		Example: `  vigil members --socket /var/lib/vigil/admin.sock --output json`,
		Args:    adminArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.dial()
			if err != nil {
				return err
			}
			ctx, cancel := adminCtx(cmd)
			defer cancel()
			resp, err := c.ListMembers(ctx, connect.NewRequest(&adminv1.ListMembersRequest{Consistent: f.consistent}))
			if err != nil {
				return adminCall("members", err)
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), resp.Msg)
			}
			self := ""
			if st, err := c.Status(ctx, connect.NewRequest(&adminv1.StatusRequest{})); err == nil {
				self = st.Msg.NodeId
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tID\tSITE\tRAFT\tLEADER\tGOSSIP\tLAST CONTACT")
			for _, m := range resp.Msg.Members {
				raftRole := m.Suffrage
				if !m.InRaft {
					raftRole = "(joining)"
				}
				leader := ""
				if m.Leader {
					leader = "*"
				}
				gossipState := m.GossipState
				if gossipState == "" {
					gossipState = "-" // not (yet) seen by the answering node's mesh
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Id, m.Site, raftRole, leader, gossipState, lastContact(m, self))
			}
			return tw.Flush()
		},
	}
	f.register(cmd, readFlags)
	cmd.AddCommand(newMembersAdmitCmd(), newMembersRemoveCmd())
	return cmd
}

// lastContact renders a member's last contact as seen by the node that answered (self).
func lastContact(m *adminv1.Member, self string) string {
	switch {
	case m.Id == self:
		return "(this node)"
	case m.LastContactMs < 0:
		return "unknown"
	}
	return (time.Duration(m.LastContactMs) * time.Millisecond).String() + " ago"
}

func newAgentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "List, show, register, revoke, quarantine, release and renew agents",
		Long: `agent manages the registry's agents through a node's admin API. Writes are commands signed here
with your operator key (--key); the node never sees the key.`,
		Args: adminArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("agent: name a subcommand (list, show, register, revoke, quarantine, release, renew)")
		},
	}
	cmd.AddCommand(newAgentListCmd(), newAgentShowCmd(), newAgentRegisterCmd(), newAgentRevokeCmd())
	cmd.AddCommand(newAgentStatusCmds()...)
	cmd.AddCommand(newAgentRotateKeyCmd(), newAgentReinstateCmd())
	cmd.AddCommand(newAgentActivityCmd())
	return cmd
}

func printAgents(w io.Writer, agents []*adminv1.Agent) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tSTATUS\tEXPIRES\tLABELS")
	for _, a := range agents {
		var labels []string
		for k, v := range a.Labels {
			labels = append(labels, k+"="+v)
		}
		sort.Strings(labels)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Name, a.Id, a.Status,
			a.ExpiresAt.AsTime().UTC().Format(time.RFC3339), strings.Join(labels, ","))
	}
	return tw.Flush()
}

func newAgentListCmd() *cobra.Command {
	f := &adminFlags{}
	var selector, status string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List agents, optionally by label selector and status",
		Example: `  vigil agent list
  vigil agent list --selector site=depot,role=planner --status active --output json`,
		Args: adminArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.dial()
			if err != nil {
				return err
			}
			ctx, cancel := adminCtx(cmd)
			defer cancel()
			// Walk every page; each page is one consistent view, the whole list may span several.
			all := &adminv1.ListAgentsResponse{}
			for after := ""; ; {
				resp, err := c.ListAgents(ctx, connect.NewRequest(&adminv1.ListAgentsRequest{Consistent: f.consistent,
					Selector: selector, Status: status, AfterName: after}))
				if err != nil {
					return adminCall("agent list", err)
				}
				all.Agents = append(all.Agents, resp.Msg.Agents...)
				if after = resp.Msg.NextAfterName; after == "" {
					break
				}
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), all)
			}
			return printAgents(cmd.OutOrStdout(), all.Agents)
		},
	}
	f.register(cmd, readFlags)
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "label selector k=v[,k=v…]: agents carrying every pair")
	cmd.Flags().StringVar(&status, "status", "", "only agents in this status: active, quarantined, revoked or expired")
	return cmd
}

func newAgentShowCmd() *cobra.Command {
	f := &adminFlags{}
	cmd := &cobra.Command{
		Use:     "show NAME|ID",
		Short:   "Show one agent by name or peer ID",
		Example: `  vigil agent show planner-1 --output json`,
		Args:    adminArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.dial()
			if err != nil {
				return err
			}
			req := &adminv1.GetAgentRequest{Consistent: f.consistent, Name: args[0]}
			if _, perr := identity.ParseID(args[0]); perr == nil {
				req.Name, req.Id = "", args[0]
			}
			ctx, cancel := adminCtx(cmd)
			defer cancel()
			resp, err := c.GetAgent(ctx, connect.NewRequest(req))
			if err != nil {
				return adminCall("agent show", err)
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), resp.Msg.Agent)
			}
			a := resp.Msg.Agent
			var labels []string
			for k, v := range a.Labels {
				labels = append(labels, k+"="+v)
			}
			sort.Strings(labels)
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			for _, kv := range [][2]string{{"name", a.Name}, {"id", a.Id}, {"spiffe id", a.SpiffeId}, {"status", a.Status},
				{"reason", a.Reason}, {"labels", strings.Join(labels, ",")}, {"capabilities", strings.Join(a.Capabilities, ",")},
				{"registered", a.RegisteredAt.AsTime().UTC().Format(time.RFC3339)}, {"expires", a.ExpiresAt.AsTime().UTC().Format(time.RFC3339)}} {
				fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
			}
			return tw.Flush()
		},
	}
	f.register(cmd, readFlags)
	return cmd
}

// signAndSend dials the node (which checks the connection flags), builds a command for p in the
// node's cluster, signs it with the operator key and sends it with send. It prints the applied
// index and audit seq.
func signAndSend(cmd *cobra.Command, f *adminFlags, what string, p identity.Payload,
	send sendFunc) error {
	c, err := f.dial()
	if err != nil {
		return err
	}
	key, err := f.operatorKey()
	if err != nil {
		return err
	}
	view, err := fetchClusterView(cmd, c, what)
	if err != nil {
		return err
	}
	command, err := identity.NewCommand(view.cluster, p, time.Now(), rand.Reader)
	if err != nil {
		return usageError{fmt.Errorf("%s: %w", what, err)}
	}
	command.Sign(key)
	if f.out != "" {
		a, err := writeApprovalFile(f.out, command)
		if err != nil {
			return fmt.Errorf("%s: --out: %w", what, err)
		}
		if f.output == "json" {
			return json.NewEncoder(cmd.OutOrStdout()).Encode(a)
		}
		need := view.needed(p)
		fmt.Fprintf(cmd.OutOrStdout(), "%s: signed (1 of %d signatures needed) and written to %s, valid until %s\n",
			what, need, f.out, a.ExpiresAt.Format(time.RFC3339))
		if need > 1 {
			fmt.Fprintf(cmd.OutOrStdout(), "next: other operators run 'vigil approve %s', then 'vigil submit %s'\n", f.out, f.out)
		} else {
			fmt.Fprintf(cmd.OutOrStdout(), "next: 'vigil submit %s'\n", f.out)
		}
		return nil
	}
	ctx, cancel := adminCtx(cmd)
	defer cancel()
	resp, err := send(c, ctx, connect.NewRequest(&adminv1.SignedCommand{Command: command.Encode()}))
	if err != nil {
		ae := adminCall(what, err).(*adminError)
		if ae.code == "insufficient_signatures" {
			ae.hint = mOfNHint(view.needed(p))
		}
		return ae
	}
	if f.output == "json" {
		return printJSON(cmd.OutOrStdout(), resp.Msg)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: applied at index %d%s\n", what, resp.Msg.AppliedIndex, auditSeqNote(resp.Msg.AuditSeq))
	return nil
}

func newAgentRegisterCmd() *cobra.Command {
	f := &adminFlags{}
	var agentID string
	var labels, caps []string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "register NAME --agent-id ID",
		Short: "Register an agent: bind NAME to its key, labels and capabilities",
		Long: `register binds an agent name to its key (given as its peer ID, which embeds the public key; the
agent prints it with 'vigil keygen'), with labels, capabilities and an expiry after which the agent
must be renewed. The command is signed with your operator key.`,
		Example: `  vigil agent register planner-1 --agent-id 12D3KooW… --label site=depot --label role=planner \
      --capability send:planner-2 --ttl 720h`,
		Args: adminArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := identity.ValidateName(args[0]); err != nil {
				return usagef("NAME: %v", err)
			}
			if agentID == "" {
				return usagef("--agent-id: required (the agent's peer ID)")
			}
			id, err := identity.ParseID(agentID)
			if err != nil {
				return usagef("--agent-id: %v", err)
			}
			if ttl <= 0 {
				return usagef("--ttl: must be positive")
			}
			lm := map[string]string{}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" {
					return usagef("--label %q: want key=value", l)
				}
				lm[k] = v
			}
			p := &identity.RegisterAgent{Name: args[0], Key: id.PublicKey(), Labels: lm, Capabilities: caps,
				ExpiresAt: time.Now().Add(ttl).UTC().Truncate(time.Second)}
			return signAndSend(cmd, f, "agent register", p, client.Client.RegisterAgent)
		},
	}
	f.register(cmd, signedFlags)
	cmd.Flags().StringVar(&agentID, "agent-id", "", "the agent's peer ID (12D3KooW…)")
	cmd.Flags().StringArrayVar(&labels, "label", nil, "label key=value (repeatable)")
	cmd.Flags().StringArrayVar(&caps, "capability", nil, "capability the agent may use (repeatable)")
	cmd.Flags().DurationVar(&ttl, "ttl", 30*24*time.Hour, "registration lifetime; the agent must be renewed before it ends")
	return cmd
}

func newAgentRevokeCmd() *cobra.Command {
	f := &adminFlags{}
	var reason string
	cmd := &cobra.Command{
		Use:     "revoke NAME|ID",
		Short:   "Revoke an agent everywhere: its key and its name",
		Example: `  vigil agent revoke planner-1 --reason "key leaked"`,
		Args:    adminArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := agentName(cmd, f, args[0])
			if err != nil {
				return err
			}
			return signAndSend(cmd, f, "agent revoke", &identity.RevokeAgent{Name: name, Reason: reason},
				client.Client.RevokeAgent)
		},
	}
	f.register(cmd, signedFlags)
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit history)")
	return cmd
}

// agentName returns the agent name a NAME argument stands for. The registry's agent commands
// take a name; a peer ID is accepted too and looked up on the node (the agent holding that key).
func agentName(cmd *cobra.Command, f *adminFlags, arg string) (string, error) {
	nameErr := identity.ValidateName(arg)
	if nameErr == nil {
		return arg, nil
	}
	id, err := identity.ParseID(arg)
	if err != nil {
		return "", usagef("NAME %q: %s takes the agent's name or its peer ID; as a name: %v", arg, cmd.CommandPath(), nameErr)
	}
	c, err := f.dial()
	if err != nil {
		return "", err
	}
	ctx, cancel := adminCtx(cmd)
	defer cancel()
	resp, err := c.GetAgent(ctx, connect.NewRequest(&adminv1.GetAgentRequest{Id: id.String(), Consistent: true}))
	if err != nil {
		return "", adminCall(fmt.Sprintf("%s: look up the agent with peer ID %s", cmd.CommandPath(), id), err)
	}
	return resp.Msg.Agent.Name, nil
}

// auditSeqNote is " (audit seq N)", or "" when the node could not tell (audit seq 0: it had not
// applied the entry yet when it answered a forwarded write). Seqs start at 1.
func auditSeqNote(seq uint64) string {
	if seq == 0 {
		return ""
	}
	return fmt.Sprintf(" (audit seq %d)", seq)
}
