package profile

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Limits that keep hostile input (alias bombs, deep nesting) cheap to reject.
const (
	maxNodes = 100_000
	maxDepth = 64
)

// location is where a value sits in the YAML source.
type location struct {
	line    int    // line of the value
	keyLine int    // line of its key, for mapping entries (else = line)
	field   string // display path: spec.mounts[2].source
}

// tree is a YAML document converted to JSON-like values (map[string]any, []any, string,
// json.Number, bool, nil), with every value's location indexed by its JSON pointer.
type tree struct {
	root  any
	index map[string]location
	nodes int
	errs  *LoadError
}

// convert builds a tree from a document node. Unlike decoding into Go values, this keeps
// every line and never turns unquoted dates into time.Time (which the validator rejects).
func convert(doc *yaml.Node, errs *LoadError) *tree {
	t := &tree{index: map[string]location{}, errs: errs}
	t.index[""] = location{line: 1, keyLine: 1}
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	t.root = t.value(n, "", "", 0, n.Line)
	return t
}

func (t *tree) value(n *yaml.Node, ptr, field string, depth, keyLine int) any {
	t.nodes++
	if t.nodes > maxNodes || depth > maxDepth {
		if t.nodes == maxNodes+1 || depth == maxDepth+1 {
			t.errs.add(n.Line, field, "document is too large or too deeply nested (aliases expand to more than %d values or %d levels)", maxNodes, maxDepth)
		}
		return nil
	}
	t.index[ptr] = location{line: n.Line, keyLine: keyLine, field: field}
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil
		}
		return t.value(n.Alias, ptr, field, depth+1, keyLine)
	case yaml.MappingNode:
		return t.mapping(n, ptr, field, depth)
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for i, c := range n.Content {
			out = append(out, t.value(c, fmt.Sprintf("%s/%d", ptr, i), fmt.Sprintf("%s[%d]", field, i), depth+1, c.Line))
		}
		return out
	case yaml.ScalarNode:
		return t.scalar(n, field)
	}
	return nil
}

func (t *tree) mapping(n *yaml.Node, ptr, field string, depth int) map[string]any {
	out := make(map[string]any, len(n.Content)/2)
	firstSeen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || (k.ShortTag() != "!!str" && k.ShortTag() != "!!int" && k.ShortTag() != "!!bool") {
			t.errs.add(k.Line, field, "field names must be plain words, not a %s", describeNode(k))
			continue
		}
		name := k.Value
		child := joinField(field, name)
		if first, dup := firstSeen[name]; dup {
			t.errs.add(k.Line, child, "is set twice (first on line %d); keep one", first)
			continue
		}
		firstSeen[name] = k.Line
		out[name] = t.value(v, ptr+"/"+escapePointer(name), child, depth+1, k.Line)
	}
	return out
}

func (t *tree) scalar(n *yaml.Node, field string) any {
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return n.Value
		}
		return b
	case "!!int":
		if i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64); err == nil {
			return json.Number(strconv.FormatInt(i, 10))
		}
		return t.float(n, field)
	case "!!float":
		return t.float(n, field)
	case "!!str", "!!timestamp", "!!binary":
		return n.Value
	}
	t.errs.add(n.Line, field, "uses the YAML tag %s, which profiles do not support; remove the tag", n.Tag)
	return n.Value
}

func (t *tree) float(n *yaml.Node, field string) any {
	var f float64
	if err := n.Decode(&f); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		t.errs.add(n.Line, field, "must be a finite number, not %q", n.Value)
		return nil
	}
	return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
}

// locate returns the location of the value at a JSON pointer, or of its nearest ancestor.
func (t *tree) locate(ptr string) location {
	for {
		if loc, ok := t.index[ptr]; ok {
			return loc
		}
		i := strings.LastIndexByte(ptr, '/')
		if i < 0 {
			return location{line: 1, keyLine: 1}
		}
		ptr = ptr[:i]
	}
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	}
	return strings.TrimPrefix(n.ShortTag(), "!!") + " value"
}

func joinField(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// pointerOf turns the validator's instance-location tokens into a JSON pointer.
func pointerOf(tokens []string) string {
	var b strings.Builder
	for _, tok := range tokens {
		b.WriteByte('/')
		b.WriteString(escapePointer(tok))
	}
	return b.String()
}
