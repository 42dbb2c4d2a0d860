package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/multiformats/go-multiaddr"

	"github.com/spf13/cobra"
	"github.com/vigil-mesh/vigil/gossip"
	"github.com/vigil-mesh/vigil/identity"
)

// initOptions are the inputs of `vigil init`.
type initOptions struct {
	dir         string
	trustDomain string
	operators   int
	threshold   int
	nodeName    string
	site        string
	advertise   string
	dev         bool // called by vigil dev: the operator key stays where dev expects it
}

func newInitCmd() *cobra.Command {
	o := initOptions{}
	cmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create a new cluster: its id, operator keys, threshold M, the first node and the genesis",
		Long: `init creates a new Vigil cluster in DIR, which becomes the first node's data directory:

  DIR/genesis.bin              the genesis command, signed by the operators; copy it to every node
  DIR/keys/node.key            the first node's key (mode 0600)
  DIR/keys/operator-N.key      the operators' keys (mode 0600): move each to its operator's machine
  DIR/keys/gossip.keyring      the gossip mesh's AES key (mode 0600): copy it to every node

Operations that widen power (adding an operator, changing M, reinstating a revoked agent) need the
signatures of M distinct operators. init never overwrites anything: DIR must be empty or absent.`,
		Example: `  vigil init --dir /var/lib/vigil --trust-domain fleet.example --operators 3 --threshold 2
  vigil init --dir ./node1 --node-name depot-1 --site depot --advertise /ip4/10.0.0.5/tcp/7400`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runInit(cmd.OutOrStdout(), o, time.Now(), rand.Reader)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", "", "data directory of the first node (must be empty or absent)")
	f.StringVar(&o.trustDomain, "trust-domain", "vigil.local", "SPIFFE trust domain of the cluster's agents")
	f.IntVar(&o.operators, "operators", 1, "number of operator keys to create")
	f.IntVar(&o.threshold, "threshold", 1, "M: operator signatures needed for power-widening operations")
	f.StringVar(&o.nodeName, "node-name", "node-1", "name of the first node")
	f.StringVar(&o.site, "site", "site-1", "site of the first node")
	f.StringVar(&o.advertise, "advertise", "/ip4/127.0.0.1/tcp/7400", "libp2p address other nodes reach the first node at")
	return cmd
}

func (o initOptions) validate() error {
	switch {
	case o.dir == "":
		return usagef("init: --dir is required")
	case o.operators < 1 || o.operators > 16:
		return usagef("init: --operators %d: must be between 1 and 16", o.operators)
	case o.threshold < 1 || o.threshold > o.operators:
		return usagef("init: --threshold %d: must be between 1 and --operators (%d)", o.threshold, o.operators)
	}
	if err := identity.ValidateName(o.nodeName); err != nil {
		return usagef("init: --node-name: %v", err)
	}
	if _, err := multiaddr.NewMultiaddr(o.advertise); err != nil || strings.Contains(o.advertise, "/p2p/") {
		return usagef("init: --advertise %q: want a libp2p address without /p2p, like /ip4/10.0.0.5/tcp/7400", o.advertise)
	}
	if _, err := identity.NewAgentSPIFFEID(o.trustDomain, "probe"); err != nil {
		return usagef("init: --trust-domain %q: %v", o.trustDomain, err)
	}
	return nil
}

// runInit creates the cluster. It writes nothing until every key and the genesis are built, and it
// refuses a directory that already holds anything.
func runInit(out io.Writer, o initOptions, now time.Time, rnd io.Reader) error {
	if err := o.validate(); err != nil {
		return err
	}
	if entries, err := os.ReadDir(o.dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("init: %s is not empty; init never overwrites a data directory", o.dir)
	}
	cluster, err := identity.NewClusterID(rnd)
	if err != nil {
		return err
	}
	nodeKey, err := identity.GenerateKey(rnd)
	if err != nil {
		return err
	}
	opKeys := make([]identity.PrivateKey, o.operators)
	g := identity.Genesis{
		ClusterID:   cluster,
		TrustDomain: o.trustDomain,
		Threshold:   o.threshold,
		Nodes: []identity.NodeEntry{{
			Name: o.nodeName, Key: nodeKey.Public(), Site: o.site, Voter: true, Addrs: []string{o.advertise},
		}},
	}
	for i := range opKeys {
		if opKeys[i], err = identity.GenerateKey(rnd); err != nil {
			return err
		}
		g.Operators = append(g.Operators, identity.OperatorEntry{
			Name: fmt.Sprintf("operator-%d", i+1), Key: opKeys[i].Public(),
		})
	}
	cmd, err := identity.NewCommand(cluster, &g, now, rnd)
	if err != nil {
		return err
	}
	for _, k := range opKeys {
		cmd.Sign(k)
	}
	// Check the genesis the way every replica will before writing anything.
	v, err := cmd.Verify()
	if err != nil {
		return fmt.Errorf("init: genesis does not verify: %w", err)
	}
	if err := identity.NewRegistry().Apply(v, now); err != nil {
		return fmt.Errorf("init: genesis is not accepted: %w", err)
	}

	gossipKey, err := gossip.GenerateKeyringKey(rnd)
	if err != nil {
		return err
	}

	keys := filepath.Join(o.dir, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if err := identity.WriteKeyFile(filepath.Join(keys, "node.key"), identity.RoleNode, nodeKey); err != nil {
		return err
	}
	for i, k := range opKeys {
		if err := identity.WriteKeyFile(filepath.Join(keys, fmt.Sprintf("operator-%d.key", i+1)), identity.RoleOperator, k); err != nil {
			return err
		}
	}
	if err := gossip.WriteKeyring(filepath.Join(keys, "gossip.keyring"), [][]byte{gossipKey}); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if err := writeFileSync(filepath.Join(o.dir, "genesis.bin"), cmd.Encode(), 0o644); err != nil {
		return fmt.Errorf("init: %w", err)
	}

	fmt.Fprintf(out, "cluster id    %s\n", cluster)
	fmt.Fprintf(out, "trust domain  %s\n", o.trustDomain)
	fmt.Fprintf(out, "threshold     %d of %d operators\n", o.threshold, o.operators)
	fmt.Fprintf(out, "node          %s  %s  site=%s  voter  %s\n", o.nodeName, nodeKey.ID(), o.site, o.advertise)
	for i, k := range opKeys {
		fmt.Fprintf(out, "operator      operator-%d  %s\n", i+1, k.ID())
	}
	fmt.Fprintf(out, "\nwrote %s/genesis.bin (give it to every node), %s/node.key and %d operator key(s) in %s\n",
		o.dir, keys, o.operators, keys)
	fmt.Fprintf(out, "wrote %s/gossip.keyring: the gossip mesh's key; give every node the same file (gossip.keyring)\n", keys)
	if !o.dev {
		fmt.Fprintln(out, "move each operator key to its operator's machine; a node does not need them")
		fmt.Fprintf(out, "start the node with: vigil node --config FILE (node.data_dir: %s); see vigil config default\n", o.dir)
	}
	return nil
}

// writeFileSync writes a new file and fsyncs it, so an acknowledged init survives a crash.
func writeFileSync(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
