package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/admin/client"
)

// approvalFormat names the approval file's format; a file with another is refused.
const approvalFormat = "vigil-command/v1"

// maxApprovalFile caps the approval file read from disk: a command is at most
// identity.MaxCommandSize bytes, base64 grows it by a third, plus the descriptive fields.
const maxApprovalFile = identity.MaxCommandSize*2 + 64<<10

// approvalFile is a signed command waiting for more operator signatures (M-of-N). Command is
// the truth: every other field is derived from it when the file is written and checked against
// it when the file is read, so an edited description is refused rather than shown.
type approvalFile struct {
	Format    string    `json:"format"`
	Kind      string    `json:"kind"`
	Cluster   string    `json:"cluster"`
	Summary   string    `json:"summary"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"` // IssuedAt + the registry's command age limit
	Signers   []string  `json:"signers"`    // peer IDs, in signing order
	Command   []byte    `json:"command"`    // identity.Command.Encode(), base64 in JSON
}

// commandLifetime is how long after IssuedAt the registry accepts a command
// (identity.Limits.MaxCommandAge; every node runs the default).
var commandLifetime = identity.DefaultLimits().MaxCommandAge

func newApprovalFile(c *identity.Command) (*approvalFile, *identity.VerifiedCommand, error) {
	v, err := c.Verify()
	if err != nil {
		return nil, nil, err
	}
	a := &approvalFile{Format: approvalFormat, Kind: c.Kind.String(), Cluster: c.ClusterID.String(),
		Summary: describe(v.Payload()), IssuedAt: c.IssuedAt.UTC(), ExpiresAt: c.IssuedAt.Add(commandLifetime).UTC(),
		Command: c.Encode()}
	for _, s := range v.Signers() {
		a.Signers = append(a.Signers, s.String())
	}
	return a, v, nil
}

func writeApprovalFile(path string, c *identity.Command) (*approvalFile, error) {
	a, _, err := newApprovalFile(c)
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return nil, err
	}
	// Write beside the target and rename, so a reader never sees half a file.
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	return a, os.Rename(tmp.Name(), path)
}

// readApprovalFile reads, decodes and verifies an approval file; the description must match
// the signed command.
func readApprovalFile(path string) (*identity.Command, *identity.VerifiedCommand, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxApprovalFile+1))
	if err != nil {
		return nil, nil, err
	}
	if len(raw) > maxApprovalFile {
		return nil, nil, fmt.Errorf("%s: larger than %d bytes: not an approval file", path, maxApprovalFile)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var a approvalFile
	if err := dec.Decode(&a); err != nil {
		return nil, nil, fmt.Errorf("%s: not an approval file: %w", path, err)
	}
	if a.Format != approvalFormat {
		return nil, nil, fmt.Errorf("%s: format %q, want %q", path, a.Format, approvalFormat)
	}
	c, err := identity.DecodeCommand(a.Command)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: command: %w", path, err)
	}
	want, v, err := newApprovalFile(c)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: command: %w", path, err)
	}
	for _, chk := range [][3]string{{"kind", a.Kind, want.Kind}, {"cluster", a.Cluster, want.Cluster},
		{"summary", a.Summary, want.Summary}, {"signers", strings.Join(a.Signers, ","), strings.Join(want.Signers, ",")},
		{"issued_at", a.IssuedAt.Format(time.RFC3339Nano), want.IssuedAt.Format(time.RFC3339Nano)}} {
		if chk[1] != chk[2] {
			return nil, nil, fmt.Errorf("%s: %s says %q but the signed command says %q: the file was edited", path, chk[0], chk[1], chk[2])
		}
	}
	return c, v, nil
}

// describe is a one-line account of what a payload does.
func describe(p identity.Payload) string {
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	switch p := p.(type) {
	case *identity.RegisterAgent:
		return fmt.Sprintf("register agent %s (%s) until %s", p.Name, p.Key.ID(), ts(p.ExpiresAt))
	case *identity.RevokeAgent:
		return fmt.Sprintf("revoke agent %s: %q", p.Name, p.Reason)
	case *identity.QuarantineAgent:
		return fmt.Sprintf("quarantine agent %s: %q", p.Name, p.Reason)
	case *identity.ReleaseAgent:
		return "release agent " + p.Name
	case *identity.RenewAgent:
		return fmt.Sprintf("renew agent %s until %s", p.Name, ts(p.ExpiresAt))
	case *identity.RotateAgentKey:
		return fmt.Sprintf("rotate agent %s to key %s", p.Name, p.NewKey.ID())
	case *identity.ReinstateAgent:
		return fmt.Sprintf("reinstate agent %s under key %s until %s", p.Name, p.Key.ID(), ts(p.ExpiresAt))
	case *identity.AddOperator:
		return fmt.Sprintf("add operator %s (%s)", p.Operator.Name, p.Operator.Key.ID())
	case *identity.RemoveOperator:
		return "remove operator " + p.Name
	case *identity.SetThreshold:
		return fmt.Sprintf("set the operator threshold to %d", p.Threshold)
	case *identity.AdmitNode:
		return fmt.Sprintf("admit node %s (%s), site %q, voter %t", p.Node.Name, p.Node.Key.ID(), p.Node.Site, p.Node.Voter)
	case *identity.RemoveNode:
		return "remove node " + p.Name
	case *identity.SetPolicy:
		return fmt.Sprintf("apply policy version %d (%d bytes)", p.Version, len(p.Document))
	case *identity.SetAutomatedResponse:
		if p.Enabled {
			return "enable automated response"
		}
		return "disable automated response"
	case *identity.SetRevokeQuorum:
		return fmt.Sprintf("set the automated revocation quorum to %d nodes", p.Quorum)
	}
	return p.Kind().String()
}

// senders maps each operator command kind to the admin method that takes it.
var senders = map[identity.Kind]sendFunc{
	identity.KindRegisterAgent:        client.Client.RegisterAgent,
	identity.KindRevokeAgent:          client.Client.RevokeAgent,
	identity.KindQuarantineAgent:      client.Client.QuarantineAgent,
	identity.KindReleaseAgent:         client.Client.ReleaseAgent,
	identity.KindRenewAgent:           client.Client.RenewAgent,
	identity.KindRotateAgentKey:       client.Client.RotateAgentKey,
	identity.KindReinstateAgent:       client.Client.ReinstateAgent,
	identity.KindAddOperator:          client.Client.AddOperator,
	identity.KindRemoveOperator:       client.Client.RemoveOperator,
	identity.KindSetThreshold:         client.Client.SetThreshold,
	identity.KindAdmitNode:            client.Client.AdmitNode,
	identity.KindRemoveNode:           client.Client.RemoveNode,
	identity.KindSetPolicy:            client.Client.ApplyPolicy,
	identity.KindSetAutomatedResponse: client.Client.SetAutomatedResponse,
	identity.KindSetRevokeQuorum:      client.Client.SetRevokeQuorum,
}

// clusterView is what the approval commands need from the node.
type clusterView struct {
	cluster   identity.ClusterID
	threshold int
	operators map[string]string // peer ID -> name
}

// fetchClusterID asks the node which cluster it belongs to (commands are signed for it).
func fetchClusterID(ctx context.Context, c client.Client, what string) (identity.ClusterID, error) {
	st, err := c.Status(ctx, connect.NewRequest(&adminv1.StatusRequest{}))
	if err != nil {
		return identity.ClusterID{}, adminCall(what, err)
	}
	cid, err := identity.ParseClusterID(st.Msg.ClusterId)
	if err != nil {
		return identity.ClusterID{}, fmt.Errorf("%s: the node reports no cluster id (%q): %w", what, st.Msg.ClusterId, err)
	}
	return cid, nil
}

func fetchClusterView(cmd *cobra.Command, c client.Client, what string) (*clusterView, error) {
	ctx, cancel := adminCtx(cmd)
	defer cancel()
	cid, err := fetchClusterID(ctx, c, what)
	if err != nil {
		return nil, err
	}
	ops, err := c.ListOperators(ctx, connect.NewRequest(&adminv1.ListOperatorsRequest{}))
	if err != nil {
		return nil, adminCall(what, err)
	}
	v := &clusterView{cluster: cid, threshold: int(ops.Msg.Threshold), operators: map[string]string{}}
	for _, o := range ops.Msg.Operators {
		v.operators[o.Id] = o.Name
	}
	return v, nil
}

// needed is how many signatures the registry requires on a command carrying p.
func (v *clusterView) needed(p identity.Payload) int {
	if identity.NeedsThreshold(p) {
		return v.threshold
	}
	return 1
}

func (v *clusterView) signerName(id string) string {
	if n, ok := v.operators[id]; ok {
		return n + " (" + id + ")"
	}
	return id + " (not an operator)"
}

// mOfNHint is added to an insufficient-signatures error.
func mOfNHint(need int) string {
	return fmt.Sprintf("this command needs %d distinct operator signatures: write it with --out FILE, "+
		"have other operators run 'vigil approve FILE', then send it with 'vigil submit FILE' (within %s of --out)",
		need, commandLifetime)
}

// checkFresh refuses a command the registry would refuse as stale or from the future.
func checkFresh(c *identity.Command, now time.Time) error {
	if exp := c.IssuedAt.Add(commandLifetime); now.After(exp) {
		return fmt.Errorf("the command expired at %s (issued %s; commands are valid for %s): create it again with --out",
			exp.UTC().Format(time.RFC3339), c.IssuedAt.UTC().Format(time.RFC3339), commandLifetime)
	}
	if skew := identity.DefaultLimits().MaxClockSkew; c.IssuedAt.After(now.Add(skew)) {
		return fmt.Errorf("the command was issued at %s, more than %s in the future: check the clocks", c.IssuedAt.UTC().Format(time.RFC3339), skew)
	}
	return nil
}

func printApproval(w io.Writer, v *clusterView, vc *identity.VerifiedCommand, c *identity.Command) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "kind:\t%s\n", c.Kind)
	fmt.Fprintf(tw, "does:\t%s\n", describe(vc.Payload()))
	fmt.Fprintf(tw, "cluster:\t%s\n", c.ClusterID)
	fmt.Fprintf(tw, "issued:\t%s\n", c.IssuedAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(tw, "expires:\t%s\n", c.IssuedAt.Add(commandLifetime).UTC().Format(time.RFC3339))
	for i, s := range vc.Signers() {
		label := ""
		if i == 0 {
			label = "signed by:"
		}
		fmt.Fprintf(tw, "%s\t%s\n", label, v.signerName(s.String()))
	}
	fmt.Fprintf(tw, "signatures:\t%d of %d needed\n", len(vc.Signers()), v.needed(vc.Payload()))
	return tw.Flush()
}

func newApproveCmd() *cobra.Command {
	f := &adminFlags{}
	var show bool
	cmd := &cobra.Command{
		Use:   "approve FILE",
		Short: "Show a command waiting for signatures (M-of-N) and add your signature to it",
		Long: `approve reads FILE, written by a write command run with --out, shows what the command does
(kind, summary, cluster, who signed, how many signatures the registry needs) and adds your operator
signature (--key) to FILE in place. It refuses a command for another cluster than the node's, an
expired one, one you already signed, one whose description was edited, and a key that is not an
operator. The node is asked only for the cluster, the operators and the threshold.

A command is valid for ` + commandLifetime.String() + ` after it was created with --out: all approvals and the submit
must happen within that window. With --show, approve only prints and signs nothing.`,
		Example: `  vigil operators add carol --operator-id 12D3KooW… --out add-carol.json   # alice
  vigil approve add-carol.json --key bob.key                                 # bob
  vigil submit add-carol.json`,
		Args: adminArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.dial()
			if err != nil {
				return err
			}
			command, vc, err := readApprovalFile(args[0])
			if err != nil {
				return fmt.Errorf("approve: %w", err)
			}
			view, err := fetchClusterView(cmd, c, "approve")
			if err != nil {
				return err
			}
			if command.ClusterID != view.cluster {
				return fmt.Errorf("approve: %s is a command for cluster %s, but the node is in cluster %s", args[0], command.ClusterID, view.cluster)
			}
			if err := checkFresh(command, time.Now()); err != nil {
				return fmt.Errorf("approve: %s: %w", args[0], err)
			}
			if show {
				if f.output == "json" {
					a, _, err := newApprovalFile(command)
					if err != nil {
						return err
					}
					return json.NewEncoder(cmd.OutOrStdout()).Encode(a)
				}
				return printApproval(cmd.OutOrStdout(), view, vc, command)
			}
			key, err := f.operatorKey()
			if err != nil {
				return err
			}
			me := key.Public().ID().String()
			for _, s := range vc.Signers() {
				if s.String() == me {
					return fmt.Errorf("approve: %s: already signed by you, %s; another operator must approve", args[0], view.signerName(me))
				}
			}
			if _, ok := view.operators[me]; !ok {
				return fmt.Errorf("approve: your key %s is not an operator of cluster %s", me, view.cluster)
			}
			command.Sign(key)
			a, err := writeApprovalFile(args[0], command)
			if err != nil {
				return fmt.Errorf("approve: %w", err)
			}
			if f.output == "json" {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(a)
			}
			_, vc, err = readApprovalFile(args[0])
			if err != nil {
				return fmt.Errorf("approve: %w", err)
			}
			if err := printApproval(cmd.OutOrStdout(), view, vc, command); err != nil {
				return err
			}
			if have, need := len(vc.Signers()), view.needed(vc.Payload()); have < need {
				fmt.Fprintf(cmd.OutOrStdout(), "signed; %d more signature(s) needed: pass %s to another operator\n", need-have, args[0])
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "signed; enough signatures: send it with 'vigil submit %s'\n", args[0])
			}
			return nil
		},
	}
	f.register(cmd, plainFlags)
	cmd.Flags().BoolVar(&show, "show", false, "only show the command and its signatures; sign nothing")
	return cmd
}

func newSubmitCmd() *cobra.Command {
	f := &adminFlags{}
	cmd := &cobra.Command{
		Use:   "submit FILE",
		Short: "Send a command collected with --out and approve to the cluster",
		Long: `submit sends the signed command in FILE (written by --out, signed further by 'vigil approve')
to the node, which replicates it; the registry checks every signature and the threshold. submit adds
no signature and needs no operator key on the Unix socket.`,
		Example: `  vigil submit add-carol.json --socket /var/lib/vigil/admin.sock`,
		Args:    adminArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.dial()
			if err != nil {
				return err
			}
			command, vc, err := readApprovalFile(args[0])
			if err != nil {
				return fmt.Errorf("submit: %w", err)
			}
			if err := checkFresh(command, time.Now()); err != nil {
				return fmt.Errorf("submit: %s: %w", args[0], err)
			}
			send, ok := senders[command.Kind]
			if !ok {
				return fmt.Errorf("submit: %s: a %s command is not sent by operators", args[0], command.Kind)
			}
			ctx, cancel := adminCtx(cmd)
			defer cancel()
			what := "submit " + command.Kind.String()
			resp, err := send(c, ctx, connect.NewRequest(&adminv1.SignedCommand{Command: command.Encode()}))
			if err != nil {
				ae := adminCall(what, err).(*adminError)
				switch ae.code {
				case "insufficient_signatures":
					ae.msg = fmt.Sprintf("%d signature(s) on %s are not enough: %s", len(vc.Signers()), args[0], ae.msg)
					ae.hint = fmt.Sprintf("have more operators run 'vigil approve %s'", args[0])
				case "replay":
					// Every command carries a nonce the registry accepts once: the file's command
					// has been applied already (by this submit or an earlier one).
					ae.msg = fmt.Sprintf("%s was already applied (the registry has seen its command: %s)", args[0], ae.msg)
					ae.hint = "to do it again, sign a new command"
				}
				return ae
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), resp.Msg)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s: applied at index %d%s\n", what, describe(vc.Payload()),
				resp.Msg.AppliedIndex, auditSeqNote(resp.Msg.AuditSeq))
			return nil
		},
	}
	f.register(cmd, plainFlags)
	return cmd
}
