package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Parse reads a policy document. Missing keys keep their Default() values; an empty document
// (or only comments) is Default(). On failure it returns Errors with every problem found, each
// naming its line and key path, wrapped so errors.Is(err, ErrInvalid) holds.
func Parse(b []byte) (*Document, error) {
	if len(b) > MaxSize {
		return nil, Errors{{Msg: fmt.Sprintf("document is %d bytes, max %d", len(b), MaxSize)}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return Default(), nil
		}
		return nil, Errors{yamlError(err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Errors{{Line: extra.Line, Column: extra.Column, Msg: "more than one YAML document; a policy is one document"}}
	} else if !errors.Is(err, io.EOF) {
		return nil, Errors{yamlError(err)}
	}
	d := Default()
	w := &walker{p: &problems{lines: map[string][2]int{}}}
	if len(root.Content) == 1 && !(root.Content[0].Kind == yaml.ScalarNode && root.Content[0].Tag == "!!null") {
		w.document(root.Content[0], d)
	}
	// Validate what was read too, but say nothing more about a key the walk already faulted.
	faulted := map[string]bool{}
	for _, e := range w.p.errs {
		faulted[e.Path] = true
	}
	n := len(w.p.errs)
	d.validate(w.p)
	kept := w.p.errs[:n]
	for _, e := range w.p.errs[n:] {
		if !faulted[e.Path] {
			kept = append(kept, e)
		}
	}
	w.p.errs = kept
	if err := w.p.err(); err != nil {
		return nil, err
	}
	return d, nil
}

// yamlError turns a yaml syntax error ("yaml: line 3: …") into a FieldError with its line.
func yamlError(err error) FieldError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
		_, rest, _ := strings.Cut(msg, ":")
		return FieldError{Line: line, Msg: strings.TrimSpace(rest)}
	}
	return FieldError{Msg: msg}
}

type walker struct{ p *problems }

func (w *walker) at(n *yaml.Node, path string) {
	if _, ok := w.p.lines[path]; !ok {
		w.p.lines[path] = [2]int{n.Line, n.Column}
	}
}

func (w *walker) bad(n *yaml.Node, path, format string, args ...any) {
	w.at(n, path)
	w.p.errs = append(w.p.errs, FieldError{Line: n.Line, Column: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	return fmt.Sprintf("%q", n.Value)
}

// mapping walks a mapping node, calling fields[key] for each known key and reporting unknown
// and repeated keys. It reports false when n is not a mapping.
func (w *walker) mapping(n *yaml.Node, path string, fields map[string]func(*yaml.Node, string)) bool {
	if n.Kind == yaml.AliasNode {
		w.bad(n, path, "YAML aliases are not allowed in a policy")
		return false
	}
	if n.Kind != yaml.MappingNode {
		w.bad(n, path, "want a mapping, got %s", kindName(n))
		return false
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		kp := k.Value
		if path != "" {
			kp = path + "." + k.Value
		}
		if k.Kind != yaml.ScalarNode {
			w.bad(k, path, "keys must be plain strings")
			continue
		}
		if seen[k.Value] {
			w.bad(k, kp, "repeated key")
			continue
		}
		seen[k.Value] = true
		f, ok := fields[k.Value]
		if !ok {
			known := make([]string, 0, len(fields))
			for name := range fields {
				known = append(known, name)
			}
			sort.Strings(known)
			w.bad(k, kp, "unknown key; known keys here: %s", strings.Join(known, ", "))
			continue
		}
		if v.Kind == yaml.AliasNode {
			w.bad(v, kp, "YAML aliases are not allowed in a policy")
			continue
		}
		w.at(v, kp)
		f(v, kp)
	}
	return true
}

func (w *walker) scalar(n *yaml.Node, path, want string) bool {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		w.bad(n, path, "want %s, got %s", want, kindName(n))
		return false
	}
	return true
}

func (w *walker) boolean(dst *bool) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		if w.scalar(n, path, "true or false") {
			if n.Tag != "!!bool" || n.Decode(dst) != nil {
				w.bad(n, path, "want true or false, got %q", n.Value)
			}
		}
	}
}

func (w *walker) str(dst *string) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		if w.scalar(n, path, "a string") {
			*dst = n.Value
		}
	}
}

func (w *walker) integer(dst *int) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		if w.scalar(n, path, "a whole number") {
			if n.Tag != "!!int" || n.Decode(dst) != nil {
				w.bad(n, path, "want a whole number, got %q", n.Value)
			}
		}
	}
}

func (w *walker) number(dst *float64) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		if w.scalar(n, path, "a number") {
			if (n.Tag != "!!int" && n.Tag != "!!float") || n.Decode(dst) != nil {
				w.bad(n, path, "want a number, got %q", n.Value)
			}
		}
	}
}

// duration reads a Go duration ("10s", "5m", "1h30m"); zero and negative are refused here so
// that an explicit "0s" is an error even where 0 means "not set".
func (w *walker) duration(dst *time.Duration) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		if !w.scalar(n, path, "a duration such as 30s, 5m or 1h") {
			return
		}
		v, err := time.ParseDuration(n.Value)
		switch {
		case err != nil:
			w.bad(n, path, "want a duration such as 30s, 5m or 1h, got %q", n.Value)
		case v <= 0:
			w.bad(n, path, "must be a positive duration, got %q", n.Value)
		default:
			*dst = v
		}
	}
}

func (w *walker) list(n *yaml.Node, path string, max int, each func(*yaml.Node, string)) {
	if n.Kind != yaml.SequenceNode {
		w.bad(n, path, "want a list, got %s", kindName(n))
		return
	}
	if len(n.Content) > max {
		w.bad(n, path, "%d entries, max %d", len(n.Content), max)
		return
	}
	for i, e := range n.Content {
		ep := fmt.Sprintf("%s[%d]", path, i)
		if e.Kind == yaml.AliasNode {
			w.bad(e, ep, "YAML aliases are not allowed in a policy")
			continue
		}
		w.at(e, ep)
		each(e, ep)
	}
}

func (w *walker) document(n *yaml.Node, d *Document) {
	w.mapping(n, "", map[string]func(*yaml.Node, string){
		"monitoring": func(n *yaml.Node, path string) {
			m := &d.Monitoring
			w.mapping(n, path, map[string]func(*yaml.Node, string){
				"enabled":  w.boolean(&m.Enabled),
				"interval": w.duration(&m.Interval),
				"policies": func(n *yaml.Node, path string) {
					m.Policies = []Rule{}
					w.list(n, path, MaxRules, func(n *yaml.Node, path string) {
						var r Rule
						var action string
						if w.mapping(n, path, map[string]func(*yaml.Node, string){
							"metric": w.str(&r.Metric),
							"threshold": func(n *yaml.Node, path string) {
								if w.scalar(n, path, "a threshold such as 80%, 64MiB or 100/m") {
									t, err := ParseThreshold(n.Value)
									if err != nil {
										w.bad(n, path, "%v", err)
									}
									r.Threshold = t
								}
							},
							"for":    w.duration(&r.For),
							"action": w.str(&action),
						}) {
							r.Action = Action(action)
							w.required(n, path, "metric", "threshold", "action")
						}
						m.Policies = append(m.Policies, r)
					})
				},
			})
		},
		"threat_detection": func(n *yaml.Node, path string) {
			t := &d.ThreatDetection
			w.mapping(n, path, map[string]func(*yaml.Node, string){
				"enabled":         w.boolean(&t.Enabled),
				"share_threshold": w.number(&t.ShareThreshold),
				"models": func(n *yaml.Node, path string) {
					t.Models = []Model{}
					w.list(n, path, MaxModels, func(n *yaml.Node, path string) {
						var m Model
						if w.mapping(n, path, map[string]func(*yaml.Node, string){
							"type":      w.str(&m.Type),
							"algorithm": w.str(&m.Algorithm),
							"features": func(n *yaml.Node, path string) {
								m.Features = []string{}
								w.list(n, path, MaxFeatures, func(n *yaml.Node, path string) {
									var f string
									w.str(&f)(n, path)
									m.Features = append(m.Features, f)
								})
							},
							"params": func(n *yaml.Node, path string) {
								if n.Kind != yaml.MappingNode {
									w.bad(n, path, "want a mapping, got %s", kindName(n))
									return
								}
								if hasAlias(n) {
									w.bad(n, path, "YAML aliases are not allowed in a policy")
									return
								}
								var p map[string]any
								if err := n.Decode(&p); err != nil {
									w.bad(n, path, "%v", err)
									return
								}
								if len(p) > 0 {
									m.Params = p
								}
							},
						}) {
							w.required(n, path, "type", "algorithm")
						}
						t.Models = append(t.Models, m)
					})
				},
			})
		},
		"response": func(n *yaml.Node, path string) {
			r := &d.Response
			ttlSet := false
			defer func() {
				if !ttlSet { // throttle_ttl follows quarantine_ttl unless given
					r.ThrottleTTL = r.QuarantineTTL
				}
			}()
			w.mapping(n, path, map[string]func(*yaml.Node, string){
				"window": w.duration(&r.Window),
				"ladder": func(n *yaml.Node, path string) {
					r.Ladder = []Action{}
					w.list(n, path, len(actions)+1, func(n *yaml.Node, path string) {
						var a string
						w.str(&a)(n, path)
						r.Ladder = append(r.Ladder, Action(a))
					})
				},
				"quarantine_ttl": w.duration(&r.QuarantineTTL),
				"throttle_rate": func(n *yaml.Node, path string) {
					if w.scalar(n, path, "a rate such as 1/s, 30/m or 600/h") {
						v, err := ParseRate(n.Value)
						if err != nil {
							w.bad(n, path, "%v", err)
							return
						}
						r.ThrottleRate = v
					}
				},
				"throttle_burst": w.integer(&r.ThrottleBurst),
				"throttle_ttl": func(n *yaml.Node, path string) {
					ttlSet = true
					w.duration(&r.ThrottleTTL)(n, path)
				},
				"escalate_after": w.integer(&r.EscalateAfter),
				"revoke_quorum": func(n *yaml.Node, path string) {
					r.RevokeQuorumSet = true
					w.integer(&r.RevokeQuorum)(n, path)
				},
				"dry_run": w.boolean(&r.DryRun),
			})
		},
		"allow_disabled": w.boolean(&d.AllowDisabled),
	})
}

// required reports each key of keys missing from the mapping n.
func (w *walker) required(n *yaml.Node, path string, keys ...string) {
	for _, k := range keys {
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				found = true
			}
		}
		if !found {
			w.bad(n, path+"."+k, "required")
		}
	}
}

func hasAlias(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return true
	}
	for _, c := range n.Content {
		if hasAlias(c) {
			return true
		}
	}
	return false
}
