package config

import (
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vigil-mesh/vigil/identity"
)

func TestDefaultConfigValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
}

// TestDefaultFile keeps DefaultFile in sync with Config: it parses to DefaultConfig() with no
// problem and sets every leaf key of the struct (a new field without a template line fails).
func TestDefaultFile(t *testing.T) {
	c, ps := Parse("node.yaml", []byte(DefaultFile))
	if len(ps) != 0 {
		t.Fatalf("DefaultFile has problems: %v", ps)
	}
	if !reflect.DeepEqual(c, DefaultConfig()) {
		t.Fatalf("DefaultFile parses to\n%+v\nwant DefaultConfig()\n%+v", c, DefaultConfig())
	}
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(DefaultFile), &root); err != nil {
		t.Fatal(err)
	}
	got := yamlKeys(root.Content[0], "")
	want := leafKeys(reflect.TypeFor[Config](), "")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("DefaultFile keys\n%v\nstruct keys\n%v", got, want)
	}
}

func yamlKeys(n *yaml.Node, path string) []string {
	if n.Kind != yaml.MappingNode {
		return []string{path}
	}
	var out []string
	for i := 0; i < len(n.Content); i += 2 {
		out = append(out, yamlKeys(n.Content[i+1], join(path, n.Content[i].Value))...)
	}
	return out
}

func leafKeys(t reflect.Type, path string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		p := join(path, tag(f))
		if f.Type.Kind() == reflect.Struct {
			out = append(out, leafKeys(f.Type, p)...)
		} else {
			out = append(out, p)
		}
	}
	return out
}

func TestLoadResolvesPaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.yaml")
	abs := filepath.Join(dir, "elsewhere", "k.key")
	write(t, path, "node:\n  data_dir: data\nauth:\n  key: "+abs+"\n  enforcement: strict\n  max_staleness: 2m\nraft:\n  voter: true\n")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.Node.DataDir = filepath.Join(dir, "data")
	want.Auth.Key = abs
	want.Auth.Enforcement = EnforcementStrict
	want.Auth.MaxStaleness = 2 * time.Minute
	want.Raft.Voter = true
	want.Listen.AdminSocket = filepath.Join(dir, "data", "admin.sock")
	want.Genesis = filepath.Join(dir, "data", "genesis.bin")
	want.Gossip.Keyring = filepath.Join(dir, "data", "keys", "gossip.keyring")
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("Load =\n%+v\nwant\n%+v", c, want)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.yaml")
	write(t, path, "auth:\n  method: basic\n  password: hunter2\nlog:\n  levl: info\n")
	_, err := Load(path)
	for _, s := range []error{ErrRefused, ErrUnknownKey} {
		if !errors.Is(err, s) {
			t.Errorf("Load error %v does not wrap %v", err, s)
		}
	}
	var p Problem
	if !errors.As(err, &p) || p.File != path || p.Line != 2 || p.Key != "auth.method" {
		t.Errorf("first problem %+v, want %s line 2 auth.method", p, path)
	}
	for _, want := range []string{
		path + ":2: auth.method: basic sends a shared password",
		path + ":3: auth.password: password is a shared secret",
		path + ":5: log.levl: unknown key; did you mean log.level?",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Load error\n%v\ndoes not contain %q", err, want)
		}
	}

	if _, err := Load(filepath.Join(dir, "absent.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}

	big := filepath.Join(dir, "big.yaml")
	write(t, big, "# "+strings.Repeat("x", MaxFileSize)+"\n")
	if _, err := Load(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized file: %v, want ErrTooLarge", err)
	}
	if ps := Lint(big); len(ps) != 1 || !errors.Is(ps[0], ErrTooLarge) {
		t.Errorf("Lint(oversized) = %v", ps)
	}

	warn := filepath.Join(dir, "warn.yaml")
	write(t, warn, "threat_detection:\n  enabled: true\n")
	if c, err := Load(warn); err != nil || !reflect.DeepEqual(c, DefaultConfig().resolve(dir)) {
		t.Errorf("a warning failed Load: %v", err)
	}
}

func TestValidate(t *testing.T) {
	c := DefaultConfig()
	c.Auth.Method = "basic"
	c.Auth.ReverifyInterval = time.Millisecond
	err := c.Validate()
	if !errors.Is(err, ErrRefused) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("Validate = %v, want ErrRefused and ErrInvalid", err)
	}
	for _, want := range []string{"config: auth.method: basic sends", "config: auth.reverify_interval: 1ms is below 1s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want %q", err, want)
		}
	}
}

func TestProblemString(t *testing.T) {
	p := Problem{File: "node.yaml", Line: 7, Key: "auth.methd", Message: "unknown key", Severity: SeverityError, Err: ErrUnknownKey}
	if got := p.String(); got != "node.yaml:7: auth.methd: unknown key" {
		t.Errorf("String() = %q", got)
	}
	p.Severity = SeverityWarning
	if got := p.String(); got != "node.yaml:7: auth.methd: warning: unknown key" {
		t.Errorf("String() = %q", got)
	}
	if got := (Problem{File: "f", Message: "m"}).String(); got != "f: m" {
		t.Errorf("String() = %q", got)
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// want is one expected problem: line, key, sentinel and a part of the message.
type want struct {
	line int
	key  string
	err  error
	msg  string
	warn bool
}

func nodeID(t testing.TB) string {
	k, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.ID().String()
}

func TestLint(t *testing.T) {
	id := nodeID(t)
	tests := []struct {
		name string
		yaml string
		want []want
	}{
		{name: "empty file", yaml: ""},
		{name: "comments only", yaml: "# nothing\n"},
		{name: "valid", yaml: `node:
  name: depot-1
  site: depot
  data_dir: /srv/vigil
listen:
  libp2p: [/ip4/0.0.0.0/tcp/0, /ip6/::/udp/0/quic-v1]
  admin: "[::1]:0"
  admin_socket: /run/vigil.sock
  http: 127.0.0.1:9090
advertise: [/dns4/depot.example/tcp/7400]
join:
  - /ip4/10.0.0.5/tcp/7400/p2p/` + id + `
raft: {voter: true, heartbeat_timeout: 50ms, election_timeout: 50ms, commit_timeout: 1ms, snapshot_threshold: 100}
auth: {method: noise, key: /etc/vigil/node.key, enforcement: strict, max_staleness: 10s, reverify_interval: 1s}
genesis: /etc/vigil/genesis.bin
log: {level: debug, format: text}
`},
		{name: "unknown key with line", yaml: "node:\n  name: a\nauth:\n  methd: noise\n",
			want: []want{{4, "auth.methd", ErrUnknownKey, "unknown key; did you mean auth.method?", false}}},
		{name: "unknown top-level key", yaml: "\n\nlisten_addr: x\n",
			want: []want{{3, "listen_addr", ErrUnknownKey, "unknown key", false}}},
		{name: "basic auth", yaml: "auth:\n  method: basic\n",
			want: []want{{2, "auth.method", ErrRefused, "basic sends a shared password; Vigil authenticates every node by its own key: use mutual_tls (libp2p TLS 1.3) or noise", false}}},
		{name: "basic auth with username and password", yaml: "auth:\n  method: basic\n  username: admin\n  password: hunter2\n",
			want: []want{
				{2, "auth.method", ErrRefused, "basic sends a shared password", false},
				{3, "auth.username", ErrRefused, "username is a shared secret; Vigil authenticates every node by its own key", false},
				{4, "auth.password", ErrRefused, "password is a shared secret; Vigil authenticates every node by its own key: remove it and use auth.method: mutual_tls", false},
			}},
		{name: "password nested under auth", yaml: "auth:\n  basic:\n    Username: a\n    password: b\n",
			want: []want{
				{2, "auth.basic", ErrUnknownKey, "unknown key", false},
				{3, "auth.basic.Username", ErrRefused, "shared secret", false},
				{4, "auth.basic.password", ErrRefused, "shared secret", false},
			}},
		{name: "unknown auth method", yaml: "auth:\n  method: tls\n",
			want: []want{{2, "auth.method", ErrInvalid, `"tls": allowed values are mutual_tls (libp2p TLS 1.3) and noise`, false}}},
		{name: "duration without unit", yaml: "auth:\n  max_staleness: 30\n",
			want: []want{{2, "auth.max_staleness", ErrInvalid, `"30" is not a duration: want a Go duration such as 500ms, 30s or 5m`, false}}},
		{name: "strict needs max_staleness", yaml: "auth:\n  enforcement: strict\n  max_staleness: 0s\n",
			want: []want{{3, "auth.max_staleness", ErrInvalid, "strict enforcement needs a positive max_staleness", false}}},
		{name: "negative max_staleness", yaml: "auth:\n  max_staleness: -1s\n",
			want: []want{{2, "auth.max_staleness", ErrInvalid, "must not be negative", false}}},
		{name: "reverify too often", yaml: "auth:\n  reverify_interval: 500ms\n",
			want: []want{{2, "auth.reverify_interval", ErrInvalid, "500ms is below 1s", false}}},
		{name: "message cap above 64 KiB", yaml: "agents:\n  max_message_bytes: 65537\n",
			want: []want{{2, "agents.max_message_bytes", ErrInvalid, "65537: must be 1 to 65536", false}}},
		{name: "no telemetry", yaml: "agents:\n  telemetry_records: 0\n",
			want: []want{{2, "agents.telemetry_records", ErrInvalid, "0: must be 1 to 10000000", false}}},
		{name: "unknown enforcement", yaml: "auth:\n  enforcement: lax\n",
			want: []want{{2, "auth.enforcement", ErrInvalid, "allowed values are best_effort and strict", false}}},
		{name: "port out of range", yaml: "listen:\n  admin: 0.0.0.0:99999\n",
			want: []want{{2, "listen.admin", ErrInvalid, "port must be a number from 0 to 65535", false}}},
		{name: "no port", yaml: "listen:\n  http: localhost\n",
			want: []want{{2, "listen.http", ErrInvalid, "want host:port", false}}},
		{name: "admin and http share a port", yaml: "listen:\n  admin: 127.0.0.1:7402\n",
			want: []want{{1, "listen.http", ErrInvalid, "is also listen.admin", false}}},
		{name: "join without peer id", yaml: "join:\n  - /ip4/10.0.0.5/tcp/7400\n",
			want: []want{{2, "join[0]", ErrInvalid, "must end in /p2p/<peer id>", false}}},
		{name: "join with a non-Ed25519 peer id", yaml: "join:\n  - /ip4/10.0.0.5/tcp/7400/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N\n",
			want: []want{{2, "join[0]", ErrInvalid, "not an Ed25519 node ID", false}}},
		{name: "listen with peer id", yaml: "listen:\n  libp2p:\n    - /ip4/0.0.0.0/tcp/7400\n    - /ip4/0.0.0.0/tcp/7400/p2p/" + id + "\n",
			want: []want{{4, "listen.libp2p[1]", ErrInvalid, "leave out /p2p/<peer id>", false}}},
		{name: "bad multiaddr", yaml: "advertise: [/ip4/999.0.0.1/tcp/1]\n",
			want: []want{{1, "advertise[0]", ErrInvalid, "is not a multiaddr", false}}},
		{name: "multiaddr without port", yaml: "advertise: [/ip4/10.0.0.1]\n",
			want: []want{{1, "advertise[0]", ErrInvalid, "needs a /tcp/<port>", false}}},
		{name: "empty listen", yaml: "listen:\n  libp2p: []\n",
			want: []want{{2, "listen.libp2p", ErrInvalid, "at least one address is required", false}}},
		{name: "bad name", yaml: "node:\n  name: Depot_1\n",
			want: []want{{2, "node.name", ErrInvalid, `"Depot_1" is not a valid name`, false}}},
		{name: "empty name", yaml: "node:\n  name: ''\n",
			want: []want{{2, "node.name", ErrInvalid, "is not a valid name", false}}},
		{name: "bad log level", yaml: "log:\n  level: verbose\n",
			want: []want{{2, "log.level", ErrInvalid, "allowed values are debug, info, warn and error", false}}},
		{name: "yes is not a bool", yaml: "raft:\n  voter: yes\n",
			want: []want{{2, "raft.voter", ErrInvalid, `"yes": want true or false`, false}}},
		{name: "negative count", yaml: "raft:\n  snapshot_threshold: -1\n",
			want: []want{{2, "raft.snapshot_threshold", ErrInvalid, "want a whole number", false}}},
		{name: "zero count", yaml: "raft:\n  snapshot_threshold: 0\n",
			want: []want{{2, "raft.snapshot_threshold", ErrInvalid, "must be positive", false}}},
		{name: "heartbeat too short", yaml: "raft:\n  heartbeat_timeout: 1ms\n",
			want: []want{{2, "raft.heartbeat_timeout", ErrInvalid, "1ms is below 5ms", false}}},
		{name: "null value", yaml: "auth:\n  key:\n",
			want: []want{{2, "auth.key", ErrInvalid, "has no value; remove the key to keep the default", false}}},
		{name: "duplicate key", yaml: "log:\n  level: info\n  level: debug\n",
			want: []want{{3, "log.level", ErrInvalid, "set twice (also on line 2)", false}}},
		{name: "section is not a mapping", yaml: "listen: 0.0.0.0:7400\n",
			want: []want{{1, "listen", ErrInvalid, "want a mapping of keys (libp2p, admin, admin_socket, http)", false}}},
		{name: "list expected", yaml: "listen:\n  libp2p: /ip4/0.0.0.0/tcp/7400\n",
			want: []want{{2, "listen.libp2p", ErrInvalid, "want a list of strings", false}}},
		{name: "string expected", yaml: "node:\n  site: [a]\n",
			want: []want{{2, "node.site", ErrInvalid, "want a string, not a list", false}}},
		{name: "monitoring disabled", yaml: "monitoring:\n  enabled: false\n",
			want: []want{
				{1, "monitoring", ErrMisplaced, "monitoring belongs in the cluster policy (vigil policy apply), not in the node configuration", true},
				{2, "monitoring.enabled", ErrRefused, "false switches monitoring off and leaves agents unwatched; if that is intended, set allow_disabled: true next to it", false},
			}},
		{name: "threat detection disabled", yaml: "threat_detection:\n  models: []\n  enabled: false\n",
			want: []want{
				{1, "threat_detection", ErrMisplaced, "threat_detection belongs in the cluster policy", true},
				{3, "threat_detection.enabled", ErrRefused, "false switches threat detection off", false},
			}},
		{name: "monitoring disabled as a string", yaml: "monitoring:\n  enabled: no\n",
			want: []want{
				{1, "monitoring", ErrMisplaced, "belongs in the cluster policy", true},
				{2, "monitoring.enabled", ErrInvalid, "want true or false", false},
			}},
		{name: "allow_disabled must be true", yaml: "monitoring:\n  enabled: false\n  allow_disabled: yes\n",
			want: []want{
				{1, "monitoring", ErrMisplaced, "belongs in the cluster policy", true},
				{2, "monitoring.enabled", ErrRefused, "set allow_disabled: true next to it", false},
			}},
		{name: "no transport security", yaml: "auth:\n  method: none\n",
			want: []want{{2, "auth.method", ErrRefused, "none: Vigil has no unauthenticated transport", false}}},
		{name: "monitoring disabled on purpose", yaml: "monitoring:\n  enabled: false\n  allow_disabled: true\n",
			want: []want{{1, "monitoring", ErrMisplaced, "belongs in the cluster policy", true}}},
		{name: "monitoring enabled", yaml: "monitoring:\n  enabled: true\nresponse:\n  dry_run: true\n",
			want: []want{
				{1, "monitoring", ErrMisplaced, "belongs in the cluster policy", true},
				{3, "response", ErrMisplaced, "response belongs in the cluster policy", true},
			}},
		{name: "several problems at once", yaml: "node:\n  name: A\nauth:\n  methd: noise\n  reverify_interval: 1ms\nlog:\n  format: xml\n",
			want: []want{
				{2, "node.name", ErrInvalid, "is not a valid name", false},
				{4, "auth.methd", ErrUnknownKey, "unknown key", false},
				{5, "auth.reverify_interval", ErrInvalid, "below 1s", false},
				{7, "log.format", ErrInvalid, "allowed values are json and text", false},
			}},
		{name: "not a mapping", yaml: "- a\n- b\n",
			want: []want{{1, "", ErrSyntax, "the file must be a mapping of keys", false}}},
		{name: "yaml syntax error", yaml: "node:\n  name: a\n   site: b\n",
			want: []want{{3, "", ErrSyntax, "not valid YAML: mapping values are not allowed", false}}},
		{name: "two documents", yaml: "node: {name: a}\n---\nnode: {name: b}\n",
			want: []want{{2, "", ErrSyntax, "a second YAML document", false}}},
		{name: "merge key", yaml: "log:\n  <<: {level: debug}\n",
			want: []want{{2, "log", ErrInvalid, "only plain keys are supported here", false}}},
		{name: "alias value", yaml: "x: &lvl debug\n",
			want: []want{{1, "x", ErrUnknownKey, "unknown key", false}}},
		{name: "socket path too long", yaml: "listen:\n  admin_socket: /" + strings.Repeat("s", 110) + "\n",
			want: []want{{2, "listen.admin_socket", ErrInvalid, "a Unix socket path must be at most 103 bytes", false}}},
		{name: "oversized", yaml: strings.Repeat("#", MaxFileSize+1),
			want: []want{{0, "", ErrTooLarge, "larger than 1048576 bytes", false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ps := Parse("node.yaml", []byte(tt.yaml))
			if len(ps) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(ps), len(tt.want), dump(ps))
			}
			for i, w := range tt.want {
				p := ps[i]
				sev := SeverityError
				if w.warn {
					sev = SeverityWarning
				}
				if p.File != "node.yaml" || p.Line != w.line || p.Key != w.key || !errors.Is(p.Err, w.err) ||
					!strings.Contains(p.Message, w.msg) || p.Severity != sev {
					t.Errorf("problem %d = %s [%v, %v]\nwant line %d key %q %v %v containing %q", i, p, p.Err, p.Severity, w.line, w.key, w.err, sev, w.msg)
				}
			}
			if HasErrors(ps) != slices.ContainsFunc(tt.want, func(w want) bool { return !w.warn }) {
				t.Errorf("HasErrors = %v", HasErrors(ps))
			}
		})
	}
}

func TestAliases(t *testing.T) {
	c, ps := Parse("node.yaml", []byte("log:\n  level: &l debug\nauth:\n  method: noise\nraft:\n  voter: true\nadvertise: &a [/ip4/10.0.0.1/tcp/7400]\nlisten:\n  libp2p: *a\n"))
	if len(ps) != 0 {
		t.Fatal(dump(ps))
	}
	if c.Log.Level != "debug" || !slices.Equal(c.Listen.Libp2p, []string{"/ip4/10.0.0.1/tcp/7400"}) {
		t.Errorf("aliases not followed: %+v", c)
	}
}

func dump(ps []Problem) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.String() + "\n")
	}
	return b.String()
}

func TestGossipSection(t *testing.T) {
	cases := map[string]string{
		"gossip.bind":      "gossip:\n  bind: localhost:7946\n",
		"gossip.profile":   "gossip:\n  profile: lann\n",
		"gossip.advertise": "gossip:\n  advertise: 10.0.0.1\n",
		"gossip.join[1]":   "gossip:\n  join: [10.0.0.1:7946, nope]\n",
	}
	for key, doc := range cases {
		_, ps := Parse("node.yaml", []byte(doc))
		found := false
		for _, p := range ps {
			if p.Key == key {
				found = true
			}
		}
		if !found {
			t.Errorf("%q: no problem reported for %s: %v", doc, key, ps)
		}
	}
	c, ps := Parse("node.yaml", []byte("gossip:\n  enabled: true\n  profile: wan\n  join: [10.0.0.1:7946]\n"))
	if len(ps) != 0 || !c.Gossip.Enabled || c.Gossip.Profile != GossipWAN || len(c.Gossip.Join) != 1 {
		t.Fatalf("valid gossip section: %+v %v", c.Gossip, ps)
	}
}
