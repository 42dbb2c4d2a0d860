package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize caps a configuration file (1 MiB); a larger file is refused before parsing.
const MaxFileSize = 1 << 20

// Load reads the configuration file at path: the defaults, overridden by the file, with
// relative paths resolved (node.data_dir against the file's directory; auth.key,
// listen.admin_socket and genesis against node.data_dir). It fails if Lint finds any
// error-severity problem; the error joins every one of them (each a Problem, so errors.As
// and errors.Is with the sentinels work). Warnings do not fail Load: use Parse to see them.
func Load(path string) (Config, error) {
	c, ps := loadFile(path)
	var errs []error
	for _, p := range ps {
		if p.Severity == SeverityError {
			errs = append(errs, p)
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

// Lint returns every problem in the configuration file at path, errors and warnings, ordered by
// line. An empty result means the file is clean.
func Lint(path string) []Problem {
	_, ps := loadFile(path)
	return ps
}

// Parse decodes a configuration file's bytes, naming the file `file` in problems and resolving
// a relative node.data_dir against filepath.Dir(file). It does no IO. The Config is meaningful
// only when HasErrors(problems) is false.
func Parse(file string, data []byte) (Config, []Problem) {
	return parse(file, filepath.Dir(file), data)
}

func loadFile(path string) (Config, []Problem) {
	fail := func(err error, format string, args ...any) (Config, []Problem) {
		return Config{}, []Problem{{File: path, Message: fmt.Sprintf(format, args...), Severity: SeverityError, Err: err}}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fail(err, "%v", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fail(err, "%v", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return fail(err, "%v", err)
	}
	return parse(path, filepath.Dir(abs), data)
}

// decoder walks the YAML node tree onto a Config, collecting problems instead of stopping.
type decoder struct {
	file  string
	lines map[string]int // key path -> line of the key (or sequence element)
	ps    []Problem
}

func parse(file, dir string, data []byte) (Config, []Problem) {
	d := &decoder{file: file, lines: map[string]int{}}
	if len(data) > MaxFileSize {
		d.add(0, "", SeverityError, ErrTooLarge, "larger than %d bytes (1 MiB); a node configuration is a few hundred bytes", MaxFileSize)
		return Config{}, d.ps
	}
	c := defaultUnresolved()
	root, ok := d.document(data)
	if !ok {
		return Config{}, d.ps
	}
	if root != nil {
		d.mapping(root, "", reflect.ValueOf(&c).Elem())
	}
	c = c.resolve(dir)
	refused := make(map[string]bool, len(d.ps))
	for _, p := range d.ps {
		refused[p.Key] = true
	}
	for _, p := range c.check() {
		if !refused[p.Key] { // a value the decoder already refused keeps its default
			d.add(d.line(p.Key), p.Key, p.Severity, p.Err, "%s", p.Message)
		}
	}
	slices.SortStableFunc(d.ps, func(a, b Problem) int { return a.Line - b.Line })
	return c, d.ps
}

func (d *decoder) add(line int, key string, sev Severity, err error, format string, args ...any) {
	d.ps = append(d.ps, Problem{File: d.file, Line: line, Key: key, Message: fmt.Sprintf(format, args...), Severity: sev, Err: err})
}

// line finds the line of key, or of its closest ancestor present in the file; 0 if none.
func (d *decoder) line(key string) int {
	for key != "" {
		if l, ok := d.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// document parses data as exactly one YAML document and returns its root mapping (nil for an
// empty file). ok is false after a syntax problem.
func (d *decoder) document(data []byte) (root *yaml.Node, ok bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, true
		}
		d.syntax(err)
		return nil, false
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		d.add(extra.Line, "", SeverityError, ErrSyntax, "a second YAML document (---): keep the whole configuration in one")
		return nil, false
	case !errors.Is(err, io.EOF):
		d.syntax(err)
		return nil, false
	}
	if len(doc.Content) == 0 {
		return nil, true
	}
	root = doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, true
	}
	if root.Kind != yaml.MappingNode {
		d.add(root.Line, "", SeverityError, ErrSyntax, "the file must be a mapping of keys (node:, listen:, auth:, …)")
		return nil, false
	}
	return root, true
}

func (d *decoder) syntax(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = strings.TrimPrefix(msg, m[0]+": ")
	}
	d.add(line, "", SeverityError, ErrSyntax, "not valid YAML: %s", msg)
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 8; i++ {
		n = n.Alias
	}
	return n
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// mapping decodes the YAML mapping n onto the struct v.
func (d *decoder) mapping(n *yaml.Node, path string, v reflect.Value) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		d.add(n.Line, path, SeverityError, ErrInvalid, "want a mapping of keys (%s)", strings.Join(tags(v.Type()), ", "))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			d.add(k.Line, path, SeverityError, ErrInvalid, "only plain keys are supported here (no merge keys or complex keys)")
			continue
		}
		kp := join(path, k.Value)
		if l, dup := seen[k.Value]; dup {
			d.add(k.Line, kp, SeverityError, ErrInvalid, "set twice (also on line %d)", l)
			continue
		}
		seen[k.Value] = k.Line
		d.lines[kp] = k.Line
		f, ok := field(v, k.Value)
		if !ok {
			d.unknown(path, kp, k, val, v.Type())
			continue
		}
		d.value(val, kp, f)
	}
}

var durationType = reflect.TypeFor[time.Duration]()

// value decodes one YAML value onto the field f; on a problem f keeps its default.
func (d *decoder) value(n *yaml.Node, kp string, f reflect.Value) {
	n = deref(n)
	bad := func(format string, args ...any) {
		d.add(n.Line, kp, SeverityError, ErrInvalid, format, args...)
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		bad("has no value; remove the key to keep the default")
		return
	}
	scalar := func(want string) bool {
		if n.Kind != yaml.ScalarNode {
			bad("want %s, not a %s", want, kindName(n.Kind))
			return false
		}
		return true
	}
	switch {
	case f.Type() == durationType:
		if !scalar("a duration") {
			return
		}
		dur, err := time.ParseDuration(n.Value)
		if err != nil {
			bad("%q is not a duration: want a Go duration such as 500ms, 30s or 5m", n.Value)
			return
		}
		f.SetInt(int64(dur))
	case f.Kind() == reflect.Struct:
		d.mapping(n, kp, f)
	case f.Kind() == reflect.String:
		if scalar("a string") {
			f.SetString(n.Value)
		}
	case f.Kind() == reflect.Bool:
		var b bool
		if !scalar("true or false") {
			return
		}
		if n.Tag != "!!bool" || n.Decode(&b) != nil {
			bad("%q: want true or false", n.Value)
			return
		}
		f.SetBool(b)
	case f.Kind() == reflect.Uint64:
		var u uint64
		if !scalar("a whole number") {
			return
		}
		if n.Tag != "!!int" || n.Decode(&u) != nil {
			bad("%q: want a whole number from 0 to %d", n.Value, uint64(1<<64-1))
			return
		}
		f.SetUint(u)
	case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
		if n.Kind != yaml.SequenceNode {
			bad("want a list of strings, e.g. [%q]", "/ip4/0.0.0.0/tcp/7400")
			return
		}
		var out []string
		ok := true
		for i, el := range n.Content {
			el = deref(el)
			ep := fmt.Sprintf("%s[%d]", kp, i)
			d.lines[ep] = el.Line
			if el.Kind != yaml.ScalarNode || el.Tag == "!!null" {
				d.add(el.Line, ep, SeverityError, ErrInvalid, "want a string")
				ok = false
				continue
			}
			out = append(out, el.Value)
		}
		if ok {
			f.Set(reflect.ValueOf(out)) // nil for an empty list
		}
	default:
		panic(fmt.Sprintf("config: no decoder for field %s of type %s", kp, f.Type()))
	}
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "scalar"
}

// policySections belong to the cluster policy document (vigil policy apply).
var policySections = []string{"monitoring", "threat_detection", "response"}

// unknown reports a key the struct t does not have, with the specific advice for the known-bad
// shapes.
func (d *decoder) unknown(path, kp string, k, val *yaml.Node, t reflect.Type) {
	underAuth := path == "auth" || strings.HasPrefix(path, "auth.")
	switch {
	case underAuth && isCredentialKey(k.Value):
		d.credential(kp, k)
		return
	case path == "" && slices.Contains(policySections, k.Value):
		d.policySection(kp, k, val)
		return
	}
	msg := "unknown key"
	if s := suggest(k.Value, tags(t)); s != "" {
		msg += "; did you mean " + join(path, s) + "?"
	}
	d.add(k.Line, kp, SeverityError, ErrUnknownKey, "%s", msg)
	if underAuth {
		d.scanCredentials(kp, val, 0)
	}
}

func isCredentialKey(k string) bool {
	k = strings.ToLower(k)
	return k == "password" || k == "username"
}

func (d *decoder) credential(kp string, k *yaml.Node) {
	d.add(k.Line, kp, SeverityError, ErrRefused,
		"%s is a shared secret; Vigil authenticates every node by its own key: remove it and use auth.method: mutual_tls (libp2p TLS 1.3) or noise, with auth.key", k.Value)
}

// scanCredentials finds username and password keys at any depth under an unknown auth key
// (auth.basic.password). Aliases are not followed: their target is scanned where it stands.
func (d *decoder) scanCredentials(path string, n *yaml.Node, depth int) {
	if depth > 32 {
		return
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			kp := join(path, k.Value)
			if k.Kind == yaml.ScalarNode && isCredentialKey(k.Value) {
				d.credential(kp, k)
			}
			d.scanCredentials(kp, val, depth+1)
		}
	case yaml.SequenceNode:
		for i, el := range n.Content {
			d.scanCredentials(fmt.Sprintf("%s[%d]", path, i), el, depth+1)
		}
	}
}

// policySection warns that a policy section is ignored here, and refuses monitoring or threat
// detection switched off without allow_disabled: true next to it.
func (d *decoder) policySection(kp string, k, val *yaml.Node) {
	d.add(k.Line, kp, SeverityWarning, ErrMisplaced,
		"%s belongs in the cluster policy (vigil policy apply), not in the node configuration; the node ignores it", k.Value)
	if kp == "response" {
		return
	}
	val = deref(val)
	if val.Kind != yaml.MappingNode {
		return
	}
	what := strings.ReplaceAll(k.Value, "_", " ")
	enabled, eline, eset := lookup(val, "enabled")
	allow, _, _ := lookup(val, "allow_disabled")
	switch {
	case !eset || enabled == "true":
	case enabled != "false":
		d.add(eline, kp+".enabled", SeverityError, ErrInvalid, "want true or false")
	case allow != "true":
		d.add(eline, kp+".enabled", SeverityError, ErrRefused,
			"false switches %s off and leaves agents unwatched; if that is intended, set allow_disabled: true next to it", what)
	}
}

// lookup returns the value of key in mapping m as "true" or "false" for a YAML boolean, or as
// "?" for anything else; set is false when m has no such key.
func lookup(m *yaml.Node, key string) (v string, line int, set bool) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != key {
			continue
		}
		var b bool
		n := deref(m.Content[i+1])
		if n.Kind == yaml.ScalarNode && n.Tag == "!!bool" && n.Decode(&b) == nil {
			return strconv.FormatBool(b), m.Content[i].Line, true
		}
		return "?", m.Content[i].Line, true
	}
	return "", 0, false
}

// field returns the field of struct v whose yaml tag is key.
func field(v reflect.Value, key string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		if tag(t.Field(i)) == key {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func tag(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

func tags(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		out = append(out, tag(t.Field(i)))
	}
	return out
}

// suggest returns the known key closest to k within edit distance 2, or "".
func suggest(k string, known []string) string {
	best, bestD := "", 3
	for _, c := range known {
		if d := editDistance(strings.ToLower(k), c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
